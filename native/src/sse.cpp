#include "meshgate/sse.h"

#include <cstring>

namespace meshgate {
namespace {

inline const char* find_byte(const char* p, const char* end, char c) {
  const void* hit = std::memchr(p, c, static_cast<size_t>(end - p));
  return hit != nullptr ? static_cast<const char*>(hit) : end;
}

inline bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline std::string_view trim_json_ws(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_json_ws(s[b])) ++b;
  while (e > b && is_json_ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace

// ---------------------------------------------------------------- framing

void SseFramer::reset() {
  tail_.clear();
  event_.clear();
  data_.clear();
  pending_ = 0;
  has_data_ = false;
  skip_lf_ = false;
}

template <typename OnEvent>
void SseFramer::feed(std::string_view in, OnEvent&& on_event) {
  const char* p = in.data();
  const char* const end = p + in.size();
  if (skip_lf_ && p < end) {
    skip_lf_ = false;
    if (*p == '\n') {
      // The second half of a "\r\n": part of the line the "\r" ended, so of
      // the current event unless that line was the blank one that ended it.
      ++p;
      if (pending_ != 0) ++pending_;
    }
  }
  // Line endings: memchr for '\n' per line; the next '\r' is looked up only
  // when passed, so a stream without '\r' costs one scan per feed.
  const char* next_cr = find_byte(p, end, '\r');
  while (p < end) {
    if (next_cr < p) next_cr = find_byte(p, end, '\r');
    const char* nl = find_byte(p, next_cr, '\n');
    const char* t = nl < next_cr ? nl : next_cr;
    if (t == end) {
      tail_.append(p, static_cast<size_t>(end - p));
      return;
    }
    size_t ending = 1;
    if (*t == '\r') {
      if (t + 1 == end) {
        skip_lf_ = true;
      } else if (t[1] == '\n') {
        ending = 2;
      }
    }
    bool go_on;
    if (tail_.empty()) {
      go_on = line(std::string_view(p, static_cast<size_t>(t - p)), static_cast<size_t>(t - p) + ending, on_event);
    } else {
      tail_.append(p, static_cast<size_t>(t - p));
      go_on = line(tail_, tail_.size() + ending, on_event);
      tail_.clear();
    }
    p = t + ending;
    if (!go_on) return;
  }
}

template <typename OnEvent>
bool SseFramer::line(std::string_view line, size_t raw_size, OnEvent& on_event) {
  if (line.empty()) {  // end of an event
    bool go_on = true;
    if (has_data_) go_on = on_event(std::string_view(event_), std::string_view(data_));
    event_.clear();
    data_.clear();
    has_data_ = false;
    pending_ = 0;
    return go_on;
  }
  pending_ += raw_size;
  size_t colon = line.find(':');
  if (colon == 0) return true;  // comment
  std::string_view field = line, value;
  if (colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
  return true;
}

// ---------------------------------------------------------------- SseDecoder

void SseDecoder::feed(std::string_view in) {
  events_.clear();
  arena_.clear();
  framer_.feed(in, [this](std::string_view name, std::string_view data) {
    size_t at = arena_.size();
    events_.push_back({at, name.size(), at + name.size(), data.size()});
    arena_.append(name);
    arena_.append(data);
    return true;
  });
}

// ---------------------------------------------------------------- OpenAIStreamDecoder

// What one event contributes; committed only when the whole event parsed and
// was not an error. Spans point into the event's payload. Duplicate keys:
// the last one wins, as in every JSON parser that builds a dict.
struct OpenAIStreamDecoder::Event {
  size_t text_mark = 0;  // out_.text size before this event
  JsonSpan model;
  JsonSpan finish_reason;
  bool has_usage = false;
  TokenUsage usage;
  bool error = false;
};

const OpenAIFeed& OpenAIStreamDecoder::feed(std::string_view in) {
  if (failed_) throw DecodeError("stream decoder already failed on a malformed event");
  out_.text.clear();
  out_.has_finish_reason = false;
  out_.has_usage = false;
  out_.has_model = false;
  out_.has_error = false;
  if (!finished_) {
    try {
      framer_.feed(in, [this](std::string_view, std::string_view data) { return on_payload(data); });
    } catch (...) {
      failed_ = true;
      framer_.reset();  // a failed decoder holds nothing
      throw;
    }
    if (finished_) framer_.reset();  // nothing more is decoded, nor held
  }
  return out_;  // out_.done stays set once [DONE] was seen
}

bool OpenAIStreamDecoder::on_payload(std::string_view payload) {
  std::string_view trimmed = trim_json_ws(payload);
  if (trimmed.empty()) return true;  // a blank payload: nothing to decode
  if (trimmed == "[DONE]") {
    out_.done = true;
    finished_ = true;
    return false;
  }
  JsonCursor c(payload.data(), payload.data() + payload.size());
  if (c.peek() != '{') c.fail("stream event is not a JSON object");
  Event ev;
  ev.text_mark = out_.text.size();
  c.object(0, [&](std::string_view key, int depth) {
    if (key == "choices") {
      out_.text.resize(ev.text_mark);  // a repeated key replaces the earlier one
      ev.finish_reason = JsonSpan{};
      if (c.peek() == '[') {
        c.array(depth, [&](int d) { choice(c, d, ev); });
      } else {
        c.value(depth);
      }
    } else if (key == "usage") {
      usage(c, depth, ev);
    } else if (key == "model") {
      ev.model = c.value(depth);
    } else if (key == "error") {
      ev.error = c.value(depth).kind != JsonKind::kNull;
    } else {
      c.value(depth);
    }
  });
  if (!c.at_end()) c.fail("unexpected content after the event's object");
  if (ev.error) {
    out_.text.resize(ev.text_mark);
    out_.has_error = true;
    out_.error.assign(payload);
    finished_ = true;
    return false;
  }
  if (ev.finish_reason.kind == JsonKind::kString) {
    out_.has_finish_reason = true;
    out_.finish_reason.clear();
    append_unescaped(ev.finish_reason, out_.finish_reason);
  }
  if (ev.has_usage) {
    out_.has_usage = true;
    out_.usage = ev.usage;
  }
  if (!model_seen_ && ev.model.kind == JsonKind::kString && ev.model.end != ev.model.begin) {
    model_seen_ = true;
    out_.has_model = true;
    out_.model.clear();
    append_unescaped(ev.model, out_.model);
  }
  return true;
}

// One element of "choices": its text counts only if its index is 0 (or
// absent), and the index may come after the text, so the strings are kept as
// spans and decoded at the end.
void OpenAIStreamDecoder::choice(JsonCursor& c, int depth, Event& ev) {
  if (c.peek() != '{') {
    c.value(depth);
    return;
  }
  JsonSpan index, content, text, finish;
  bool has_index = false;
  c.object(depth, [&](std::string_view key, int d) {
    if (key == "delta") {
      content = JsonSpan{};
      if (c.peek() == '{') {
        c.object(d, [&](std::string_view k, int dd) {
          if (k == "content") {
            content = c.value(dd);
          } else {
            c.value(dd);
          }
        });
      } else {
        c.value(d);
      }
    } else if (key == "text") {
      text = c.value(d);
    } else if (key == "finish_reason") {
      finish = c.value(d);
    } else if (key == "index") {
      index = c.value(d);
      has_index = true;
    } else {
      c.value(d);
    }
  });
  if (has_index && !(index.kind == JsonKind::kNumber && number_is_zero(index))) return;
  if (content.kind == JsonKind::kString) append_unescaped(content, out_.text);
  if (text.kind == JsonKind::kString) append_unescaped(text, out_.text);
  if (finish.kind == JsonKind::kString) ev.finish_reason = finish;
}

void OpenAIStreamDecoder::usage(JsonCursor& c, int depth, Event& ev) {
  ev.has_usage = false;
  ev.usage = TokenUsage{};
  if (c.peek() != '{') {
    c.value(depth);
    return;
  }
  ev.has_usage = true;
  auto count = [&c](int d) {
    JsonSpan s = c.value(d);
    return s.kind == JsonKind::kNumber ? number_as_count(s) : 0;
  };
  c.object(depth, [&](std::string_view key, int d) {
    if (key == "prompt_tokens") {
      ev.usage.prompt_tokens = count(d);
    } else if (key == "completion_tokens") {
      ev.usage.completion_tokens = count(d);
    } else if (key == "prompt_tokens_details") {
      ev.usage.cached_tokens = 0;
      if (c.peek() == '{') {
        c.object(d, [&](std::string_view k, int dd) {
          if (k == "cached_tokens") {
            ev.usage.cached_tokens = count(dd);
          } else {
            c.value(dd);
          }
        });
      } else {
        c.value(d);
      }
    } else {
      c.value(d);
    }
  });
}

}  // namespace meshgate
