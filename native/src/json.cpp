#include "meshgate/json.h"

#include <charconv>
#include <cstring>
#include <string>

namespace meshgate {
namespace {

// Bytes that may appear in a string with no further look: printable ASCII
// other than '"' and '\\'.
struct PlainTable {
  bool plain[256];
  constexpr PlainTable() : plain() {
    for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  }
};
constexpr PlainTable kPlain;

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighs = 0x8080808080808080ULL;

// A mask with the high bit set in each of the 8 bytes of x that is not plain
// (< 0x20, '"', '\\', >= 0x80). Bytes above a flagged byte may be flagged
// falsely (borrows run upwards); the lowest flag is always exact.
inline uint64_t special_mask(uint64_t x) {
  uint64_t quote = x ^ (kOnes * '"');
  uint64_t slash = x ^ (kOnes * '\\');
  uint64_t t = ((x - kOnes * 0x20) & ~x)    // byte < 0x20
               | ((quote - kOnes) & ~quote)  // byte == '"'
               | ((slash - kOnes) & ~slash)  // byte == '\\'
               | x;                          // byte >= 0x80
  return t & kHighs;
}

// Index of the first flagged byte of a non-zero mask of a little-endian load.
inline int first_flagged(uint64_t mask) {
#if defined(_MSC_VER)
  unsigned long i;
  _BitScanForward64(&i, mask);
  return static_cast<int>(i >> 3);
#else
  return __builtin_ctzll(mask) >> 3;
#endif
}

#if defined(_MSC_VER) || (defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
constexpr bool kLittleEndian = true;
#else
constexpr bool kLittleEndian = false;
#endif

inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads 4 hex digits at p (caller checked there are 4 bytes).
inline int hex4(const char* p) {
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    int d = hex_digit(p[i]);
    if (d < 0) return -1;
    v = (v << 4) | d;
  }
  return v;
}

inline void put_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    char b[2] = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    out.append(b, 2);
  } else if (cp < 0x10000) {
    char b[3] = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                 static_cast<char>(0x80 | (cp & 0x3F))};
    out.append(b, 3);
  } else {
    char b[4] = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
                 static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    out.append(b, 4);
  }
}

// The parts of a number token that decide its value's magnitude.
struct NumberShape {
  bool negative = false;
  bool integer = true;        // no fraction, no exponent
  bool nonzero = false;       // some mantissa digit is not 0
  int64_t lead_exponent = 0;  // decimal exponent of the first non-zero digit
};

NumberShape shape_of(const char* p, const char* end) {
  NumberShape s;
  if (p < end && *p == '-') {
    s.negative = true;
    ++p;
  }
  int64_t int_digits = 0;  // significant digits before the point
  int64_t frac_zeros = 0;  // zeros after the point before the first non-zero digit
  bool leading = true;
  for (; p < end && is_digit(*p); ++p) {
    if (*p != '0') leading = false;
    if (!leading) ++int_digits;
  }
  if (p < end && *p == '.') {
    s.integer = false;
    for (++p; p < end && is_digit(*p); ++p) {
      if (*p != '0') leading = false;
      if (leading) ++frac_zeros;
    }
  }
  s.nonzero = !leading;
  int64_t exponent = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    s.integer = false;
    ++p;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    for (; p < end && is_digit(*p); ++p) {
      if (exponent < 100000000) exponent = exponent * 10 + (*p - '0');  // saturates: far past any double
    }
    if (neg) exponent = -exponent;
  }
  s.lead_exponent = (int_digits > 0 ? int_digits - 1 : -(frac_zeros + 1)) + exponent;
  return s;
}

}  // namespace

void JsonCursor::fail(const char* what) const {
  std::string msg = "malformed JSON: ";
  msg += what;
  msg += " at byte ";
  msg += std::to_string(p_ - begin_);
  throw DecodeError(msg);
}

JsonSpan JsonCursor::value(int depth) {
  skip_ws();
  if (p_ >= end_) fail("unexpected end of data, expected a value");
  const char* b = p_;
  switch (*p_) {
    case '"':
      return string();
    case '{':
    case '[':
      skip_container(depth);
      return {b, p_, *b == '{' ? JsonKind::kObject : JsonKind::kArray, false};
    case 't':
      literal("true");
      return {b, p_, JsonKind::kBool, false};
    case 'f':
      literal("false");
      return {b, p_, JsonKind::kBool, false};
    case 'n':
      literal("null");
      return {b, p_, JsonKind::kNull, false};
    default:
      if (*p_ == '-' || is_digit(*p_)) {
        number();
        return {b, p_, JsonKind::kNumber, false};
      }
      fail("unexpected character, expected a value");
  }
}

// Skips an object or array without decoding keys.
void JsonCursor::skip_container(int depth) {
  if (*p_ == '{') {
    enter(depth);
    ++p_;
    skip_ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return;
    }
    do {
      skip_ws();
      if (p_ >= end_ || *p_ != '"') fail("expected a string key");
      string();
      expect(':', "expected ':' after a key");
      value(depth + 1);
    } while (next('}', "expected ',' or '}' in an object"));
  } else {
    enter(depth);
    ++p_;
    skip_ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return;
    }
    do {
      value(depth + 1);
    } while (next(']', "expected ',' or ']' in an array"));
  }
}

std::string_view JsonCursor::key() {
  if (p_ >= end_ || *p_ != '"') fail("expected a string key");
  JsonSpan s = string();
  std::string_view k(s.begin, static_cast<size_t>(s.end - s.begin));
  if (s.escaped) {
    key_scratch_.clear();
    append_unescaped(s, key_scratch_);
    k = key_scratch_;
  }
  expect(':', "expected ':' after a key");
  return k;
}

// The hot loop of the scanner: most of an event's bytes are in strings.
// Works on a local pointer (the member would be stored back on every byte).
JsonSpan JsonCursor::string() {
  const char* p = p_ + 1;  // past '"'
  const char* const s = p;
  const char* const end = end_;
  bool escaped = false;
  for (;;) {
    if (kLittleEndian) {
      while (end - p >= 8) {
        uint64_t x;
        std::memcpy(&x, p, 8);
        uint64_t mask = special_mask(x);
        if (mask != 0) {
          p += first_flagged(mask);
          goto special;
        }
        p += 8;
      }
    }
    while (p < end && kPlain.plain[static_cast<unsigned char>(*p)]) ++p;
  special:
    p_ = p;
    if (p >= end) fail("unterminated string");
    auto c = static_cast<unsigned char>(*p);
    if (c == '"') {
      p_ = p + 1;
      return {s, p, JsonKind::kString, escaped};
    }
    if (c == '\\') {
      escaped = true;
      escape();
    } else if (c < 0x20) {
      fail("control character in a string");
    } else {
      utf8();
    }
    p = p_;
  }
}

void JsonCursor::escape() {
  ++p_;  // past '\\'
  if (p_ >= end_) fail("unterminated string");
  switch (*p_) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      ++p_;
      return;
    case 'u': {
      ++p_;
      int cp = end_ - p_ >= 4 ? hex4(p_) : -1;
      if (cp < 0) fail("invalid \\u escape");
      p_ += 4;
      if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        int lo = end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u' ? hex4(p_ + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate escape without a low surrogate");
        p_ += 6;
      }
      return;
    }
    default:
      fail("invalid escape");
  }
}

// Validates one multi-byte UTF-8 sequence (Unicode Table 3-7: no overlong
// forms, no surrogates, nothing past U+10FFFF).
void JsonCursor::utf8() {
  auto c0 = static_cast<unsigned char>(p_[0]);
  int n;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    n = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    n = 3;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    n = 4;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    fail("invalid UTF-8");
  }
  if (end_ - p_ < n) fail("invalid UTF-8");
  auto c1 = static_cast<unsigned char>(p_[1]);
  if (c1 < lo || c1 > hi) fail("invalid UTF-8");
  for (int i = 2; i < n; ++i) {
    auto c = static_cast<unsigned char>(p_[i]);
    if (c < 0x80 || c > 0xBF) fail("invalid UTF-8");
  }
  p_ += n;
}

void JsonCursor::number() {
  const char* b = p_;
  if (*p_ == '-') ++p_;
  if (p_ >= end_ || !is_digit(*p_)) fail("invalid number");
  if (*p_ == '0') {
    ++p_;
  } else {
    while (p_ < end_ && is_digit(*p_)) ++p_;
  }
  bool simple = true;
  if (p_ < end_ && *p_ == '.') {
    ++p_;
    if (p_ >= end_ || !is_digit(*p_)) fail("invalid number: no digit after '.'");
    while (p_ < end_ && is_digit(*p_)) ++p_;
    simple = false;
  }
  if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
    ++p_;
    if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
    if (p_ >= end_ || !is_digit(*p_)) fail("invalid number: no digit in the exponent");
    while (p_ < end_ && is_digit(*p_)) ++p_;
    simple = false;
  }
  // orjson rejects a number whose double is infinite; anything under 1e308
  // is finite, so only long or large-exponent numbers need the full look.
  if (simple && p_ - b < 300) return;
  NumberShape s = shape_of(b, p_);
  if (!s.nonzero || s.lead_exponent < 308) return;
  if (s.lead_exponent == 308) {
    double v;
    auto r = std::from_chars(b, p_, v);
    if (r.ec != std::errc::result_out_of_range) return;
  }
  fail("number is infinity as a double");
}

void JsonCursor::literal(std::string_view word) {
  if (static_cast<size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0) {
    fail("invalid literal");
  }
  p_ += word.size();
}

void append_unescaped(const JsonSpan& s, std::string& out) {
  const char* p = s.begin;
  const char* end = s.end;
  if (!s.escaped) {
    out.append(p, static_cast<size_t>(end - p));
    return;
  }
  while (p < end) {
    const char* run = static_cast<const char*>(std::memchr(p, '\\', static_cast<size_t>(end - p)));
    if (run == nullptr) {
      out.append(p, static_cast<size_t>(end - p));
      return;
    }
    out.append(p, static_cast<size_t>(run - p));
    p = run + 1;  // the span was validated: an escape is complete
    switch (*p++) {
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'u': {
        auto cp = static_cast<uint32_t>(hex4(p));
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          auto low = static_cast<uint32_t>(hex4(p + 2));
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        put_utf8(cp, out);
        break;
      }
      default: out.push_back(p[-1]); break;  // '"', '\\', '/'
    }
  }
}

bool number_is_zero(const JsonSpan& s) {
  NumberShape shape = shape_of(s.begin, s.end);
  // Below the smallest subnormal double (about 4.9e-324) the value rounds to 0.
  return !shape.nonzero || shape.lead_exponent < -324;
}

int64_t number_as_count(const JsonSpan& s) {
  const char* p = s.begin;
  if (p >= s.end || *p == '-') return 0;  // negative (or -0, which is 0 anyway)
  int64_t v = 0;
  for (; p < s.end; ++p) {
    if (!is_digit(*p)) return 0;  // a fraction or exponent: a float, not a count
    int d = *p - '0';
    if (v > (INT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace meshgate
