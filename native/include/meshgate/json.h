// A small validating JSON scanner: forward-only, no allocation on the common
// path, no DOM. Callers walk objects and arrays with callbacks, look at the
// keys they need and skip the rest; every byte is checked as strictly as
// orjson checks it (so the C++ decoders and their Python twin accept and
// reject the same documents): UTF-8, escapes and surrogate pairs, number
// grammar (numbers that overflow a double are rejected, as orjson does),
// literals, nesting up to kMaxDepth, and nothing after the document.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace meshgate {

// A malformed document. The bindings turn it into ValueError.
class DecodeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Deepest nesting of arrays and objects accepted (orjson's limit).
inline constexpr int kMaxDepth = 1024;

enum class JsonKind : uint8_t { kNone, kNull, kBool, kNumber, kString, kArray, kObject };

// Where a scanned (and so validated) value lies in the document. For a string,
// [begin, end) is the raw text between the quotes; `escaped` says whether it
// holds a backslash. kNone: no value was seen.
struct JsonSpan {
  const char* begin = nullptr;
  const char* end = nullptr;
  JsonKind kind = JsonKind::kNone;
  bool escaped = false;
};

// Scans one document held by the caller (which must outlive the cursor and
// every span taken from it). Methods throw DecodeError on malformed input,
// with a short description and the byte offset, never the payload itself.
class JsonCursor {
 public:
  JsonCursor(const char* begin, const char* end) : p_(begin), begin_(begin), end_(end) {}

  // The next byte after whitespace, or '\0' at the end of the document.
  char peek() {
    skip_ws();
    return p_ < end_ ? *p_ : '\0';
  }

  // True when only whitespace is left.
  bool at_end() {
    skip_ws();
    return p_ == end_;
  }

  // Scans one value of any kind inside `depth` enclosing containers.
  JsonSpan value(int depth);

  // Walks the object the cursor is on (peek() == '{'), inside `depth`
  // enclosing containers. For each member calls on_member(key, member_depth)
  // with the decoded key, which is valid only until the next scan; on_member
  // must scan the member's value exactly once (value(), object(), array()),
  // passing member_depth.
  template <typename OnMember>
  void object(int depth, OnMember&& on_member);

  // Walks the array the cursor is on (peek() == '['); on_element(element_depth)
  // must scan one value.
  template <typename OnElement>
  void array(int depth, OnElement&& on_element);

  [[noreturn]] void fail(const char* what) const;

 private:
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  void enter(int depth) const {
    if (depth >= kMaxDepth) fail("nesting deeper than 1024");
  }
  void expect(char c, const char* what) {
    skip_ws();
    if (p_ >= end_ || *p_ != c) fail(what);
    ++p_;
  }
  // After a member or element: true on ',', false on `close`.
  bool next(char close, const char* what) {
    skip_ws();
    if (p_ < end_) {
      if (*p_ == ',') {
        ++p_;
        return true;
      }
      if (*p_ == close) {
        ++p_;
        return false;
      }
    }
    fail(what);
  }
  std::string_view key();
  JsonSpan string();
  void escape();
  void utf8();
  void number();
  void literal(std::string_view word);
  void skip_container(int depth);

  const char* p_;
  const char* begin_;
  const char* end_;
  std::string key_scratch_;  // a key with escapes, decoded
};

template <typename OnMember>
void JsonCursor::object(int depth, OnMember&& on_member) {
  enter(depth);
  ++p_;  // '{'
  skip_ws();
  if (p_ < end_ && *p_ == '}') {
    ++p_;
    return;
  }
  do {
    skip_ws();
    std::string_view k = key();
    on_member(k, depth + 1);
  } while (next('}', "expected ',' or '}' in an object"));
}

template <typename OnElement>
void JsonCursor::array(int depth, OnElement&& on_element) {
  enter(depth);
  ++p_;  // '['
  skip_ws();
  if (p_ < end_ && *p_ == ']') {
    ++p_;
    return;
  }
  do {
    on_element(depth + 1);
  } while (next(']', "expected ',' or ']' in an array"));
}

// Appends the UTF-8 text of a scanned string span.
void append_unescaped(const JsonSpan& s, std::string& out);

// For a scanned number: whether it equals zero as a double (0, -0, 0.0e5...).
bool number_is_zero(const JsonSpan& s);

// For a scanned number: its value if it is an integer literal in
// [0, INT64_MAX] (a token count), else 0.
int64_t number_as_count(const JsonSpan& s);

}  // namespace meshgate
