// Python bindings of the native decoders: the only file that includes
// pybind11. It converts arguments to C++ values, calls the plain C++17 core
// (native/include/meshgate/), and builds Python results at the end; the
// contract is documented on the pure-Python twin, router/native/_py.py.
#include <pybind11/pybind11.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include "meshgate/sse.h"

namespace py = pybind11;

namespace {

// A feed is typically one network read (a few hundred bytes, about a
// microsecond), where releasing and retaking the GIL would cost more than it
// frees; only large reads release it.
constexpr size_t kReleaseGilBytes = 64 * 1024;

// A core decoder plus a flag, read and written only under the GIL, that
// refuses a second thread while the first runs without the GIL: the cores are
// not thread-safe.
template <typename Core>
struct Decoder {
  Core core;
  bool busy = false;
};

template <typename Core, typename Fn>
decltype(auto) run(Decoder<Core>& d, size_t size, Fn&& fn) {
  if (d.busy) throw std::runtime_error("decoder fed from two threads at once; use one decoder per stream");
  if (size < kReleaseGilBytes) return fn();
  struct Unbusy {
    bool& busy;
    ~Unbusy() { busy = false; }  // runs after the GIL is taken back
  } unbusy{d.busy};
  d.busy = true;
  py::gil_scoped_release release;
  return fn();
}

std::string_view view_of(const py::bytes& data) {
  char* p = nullptr;
  Py_ssize_t n = 0;
  if (PyBytes_AsStringAndSize(data.ptr(), &p, &n) != 0) throw py::error_already_set();
  return {p, static_cast<size_t>(n)};
}

py::object steal_or_throw(PyObject* o) {
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

py::object utf8(const char* p, size_t n, const char* errors) {
  return steal_or_throw(PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), errors));
}

py::object bytes_of(const char* p, size_t n) {
  return steal_or_throw(PyBytes_FromStringAndSize(p, static_cast<Py_ssize_t>(n)));
}

py::list sse_feed(Decoder<meshgate::SseDecoder>& d, const py::bytes& data) {
  std::string_view in = view_of(data);
  run(d, in.size(), [&] { d.core.feed(in); });
  const auto& events = d.core.events();
  const std::string& arena = d.core.arena();
  py::list out(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    const meshgate::SseEvent& e = events[i];
    py::object name = utf8(arena.data() + e.name_offset, e.name_size, "replace");
    py::object payload = bytes_of(arena.data() + e.data_offset, e.data_size);
    PyObject* pair = PyTuple_New(2);
    if (pair == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(pair, 0, name.release().ptr());
    PyTuple_SET_ITEM(pair, 1, payload.release().ptr());
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), pair);
  }
  return out;
}

py::object none() { return py::none(); }

py::tuple openai_feed(Decoder<meshgate::OpenAIStreamDecoder>& d, const py::bytes& data) {
  std::string_view in = view_of(data);
  const meshgate::OpenAIFeed& r = run(d, in.size(), [&]() -> const meshgate::OpenAIFeed& { return d.core.feed(in); });
  // The tuple is assembled with the C API: this runs once per network read,
  // where py::make_tuple's per-item casts are a measurable share of the call.
  py::object items[6] = {
      utf8(r.text.data(), r.text.size(), "strict"),  // validated by the scanner
      r.has_finish_reason ? utf8(r.finish_reason.data(), r.finish_reason.size(), "strict") : none(),
      r.has_usage ? py::object(py::make_tuple(r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cached_tokens))
                  : none(),
      r.has_model ? utf8(r.model.data(), r.model.size(), "strict") : none(),
      py::bool_(r.done),
      r.has_error ? bytes_of(r.error.data(), r.error.size()) : none(),
  };
  PyObject* out = PyTuple_New(6);
  if (out == nullptr) throw py::error_already_set();
  for (Py_ssize_t i = 0; i < 6; ++i) PyTuple_SET_ITEM(out, i, items[i].release().ptr());
  return py::reinterpret_steal<py::tuple>(out);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Compiled Meshgate decoders; the contract is documented in router.native._py.";

  py::class_<Decoder<meshgate::SseDecoder>>(m, "SseDecoder",
                                            "Incremental Server-Sent Events decoder (for Anthropic, Cohere "
                                            "and any event stream).")
      .def(py::init<>())
      .def("feed", &sse_feed, py::arg("data"),
           "Every event completed by data, in order: (event name or '', data payload).")
      .def_property_readonly(
          "buffered", [](const Decoder<meshgate::SseDecoder>& d) { return d.core.buffered(); },
          "Bytes held of an incomplete event.");

  py::class_<Decoder<meshgate::OpenAIStreamDecoder>>(
      m, "OpenAIStreamDecoder",
      "Decodes an OpenAI-style chat or completions stream: SSE framing plus extraction of the fields "
      "the gateway needs, one call per network read.")
      .def(py::init<>())
      .def("feed", &openai_feed, py::arg("data"),
           "(text, finish_reason, usage, model, done, error) for the events completed by data.")
      .def_property_readonly(
          "buffered", [](const Decoder<meshgate::OpenAIStreamDecoder>& d) { return d.core.buffered(); },
          "Bytes held of an incomplete event (0 once the stream is finished or failed).");
}
