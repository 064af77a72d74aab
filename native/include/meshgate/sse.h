// Decoders for upstream Server-Sent Events streams, on the per-read path.
//
// Plain C++17, no Python: the bindings (native/bindings.cpp) convert inputs to
// std::string_view before calling in and build Python objects from the
// results after. The contract is stated, and mirrored line for line, by the
// pure-Python twin router/native/_py.py; tests/native runs one suite against
// both.
//
// SSE framing (WHATWG event-stream rules): lines end with "\n", "\r\n" or
// "\r" (a "\r\n" split across two feeds is one ending); a blank line ends an
// event; "data" lines are joined with "\n"; one space after the colon is
// dropped; "event" names the event; ":" lines are comments; a line with no
// colon is a field with an empty value; other fields are ignored; an event
// with no data line is not delivered.
//
// Every decoder is per stream and not thread-safe. Results of a feed() live
// in the decoder until the next feed().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "meshgate/json.h"

namespace meshgate {

// Incremental SSE framing: bytes in, completed (name, data) events out.
class SseFramer {
 public:
  // Frames `in`, calling on_event(name, data) for each event it completes, in
  // order; the views are valid during the call. on_event returns false to
  // stop (the rest of `in` is then dropped; call reset() before reuse).
  // Defined in sse.cpp, where the decoders instantiate it.
  template <typename OnEvent>
  void feed(std::string_view in, OnEvent&& on_event);

  // Bytes received since the last event boundary: the incomplete event held.
  size_t buffered() const { return pending_ + tail_.size(); }

  void reset();

 private:
  template <typename OnEvent>
  bool line(std::string_view line, size_t raw_size, OnEvent& on_event);

  std::string tail_;    // the incomplete last line, without its ending
  std::string event_;   // name of the current event
  std::string data_;    // data lines of the current event, joined
  size_t pending_ = 0;  // bytes of completed lines of the current event
  bool has_data_ = false;
  bool skip_lf_ = false;  // the last feed ended with "\r": a leading "\n" is its pair
};

// One event of SseDecoder::feed: offsets into SseDecoder::arena().
struct SseEvent {
  size_t name_offset, name_size, data_offset, data_size;
};

// Generic SSE decoder (Anthropic, Cohere, any event stream).
class SseDecoder {
 public:
  // Decodes `in`; the completed events are then in events(), their bytes in arena().
  void feed(std::string_view in);
  const std::vector<SseEvent>& events() const { return events_; }
  const std::string& arena() const { return arena_; }
  size_t buffered() const { return framer_.buffered(); }

 private:
  SseFramer framer_;
  std::vector<SseEvent> events_;
  std::string arena_;
};

struct TokenUsage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// What one OpenAIStreamDecoder::feed() found (see the twin for the contract).
struct OpenAIFeed {
  std::string text;  // UTF-8, validated
  bool has_finish_reason = false;
  std::string finish_reason;
  bool has_usage = false;
  TokenUsage usage;
  bool has_model = false;
  std::string model;
  bool done = false;
  bool has_error = false;
  std::string error;  // raw payload of the error event
};

// Decodes an OpenAI-style chat or completions stream (OpenAI, Azure OpenAI,
// vLLM, any OpenAI-compatible server): framing plus the fields the gateway
// needs. feed() throws DecodeError on a malformed event, and on every feed
// after that.
class OpenAIStreamDecoder {
 public:
  const OpenAIFeed& feed(std::string_view in);
  size_t buffered() const { return framer_.buffered(); }

 private:
  struct Event;
  bool on_payload(std::string_view payload);  // false: the stream is finished
  void choice(JsonCursor& c, int depth, Event& ev);
  void usage(JsonCursor& c, int depth, Event& ev);

  SseFramer framer_;
  OpenAIFeed out_;
  bool model_seen_ = false;
  bool finished_ = false;  // [DONE] or an error event was seen
  bool failed_ = false;    // a malformed event was seen
};

}  // namespace meshgate
