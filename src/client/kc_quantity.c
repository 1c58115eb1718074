/*
 * kc_quantity - Kubernetes resource quantities as exact integers.
 *
 * The scanner follows parseQuantityString in k8s.io/apimachinery's
 * pkg/api/resource/quantity.go step by step (sign, leading zeros, integer
 * digits, fraction, suffix letters, exponent sign and digits), so the same
 * texts are taken and refused. The value is then digits x 10^e10 x 2^e2 with
 * no rounding: the digits are kept as text (no length limit, as there),
 * trailing zeros move into e10, and the whole number of units is found by
 * exact steps that never overflow (see to_units).
 */
#include "kc_quantity.h"

#include <stdio.h>
#include <string.h>

/* The text shown in messages: at most this many bytes of it. */
#define SHOWN 64

/* Exponents past this are out of range or not whole whatever the digits. */
#define EXP_CLAMP ((int64_t)1 << 40)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int fail(kc_error *err, const char *text, size_t len, const char *why)
{
    return kc_error_set(err, KC_ERR_INVALID_ARG, "quantity \"%.*s%s\" %s",
                        (int)(len < SHOWN ? len : SHOWN), text, len > SHOWN ? "..." : "", why);
}

/*
 * Base and exponent of a suffix, as resource's suffixer interprets it.
 * *raw is the exponent of an e/E suffix as written (else 0), for the one
 * place where Kubernetes looks at it cut to 32 bits.
 */
static bool interpret_suffix(const char *s, size_t n, int64_t *e10, int *e2, int64_t *raw)
{
    *raw = 0;
    static const struct {
        const char *name;
        int e10, e2;
    } table[] = {
        {"", 0, 0},    {"n", -9, 0},  {"u", -6, 0},  {"m", -3, 0},  {"k", 3, 0},   {"M", 6, 0},
        {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},  {"Ki", 0, 10}, {"Mi", 0, 20},
        {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50}, {"Ei", 0, 60},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strlen(table[i].name) == n && memcmp(table[i].name, s, n) == 0) {
            *e10 = table[i].e10;
            *e2 = table[i].e2;
            return true;
        }
    }
    if (n < 2 || (s[0] != 'e' && s[0] != 'E'))
        return false;
    /* strconv.ParseInt(s[1:], 10, 64): optional sign, then only digits. */
    size_t i = 1;
    bool neg = false;
    if (s[i] == '+' || s[i] == '-')
        neg = s[i++] == '-';
    if (i == n)
        return false;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (lim - d) / 10)
            return false; /* ParseInt's range error: Kubernetes refuses the suffix too */
        v = v * 10 + d;
    }
    *raw = neg ? (int64_t)(0 - v) : (int64_t)v;
    /* Clamped: past EXP_CLAMP every non-zero value is out of range or not whole. */
    int64_t e = v > (uint64_t)EXP_CLAMP ? EXP_CLAMP : (int64_t)v;
    *e10 = neg ? -e : e;
    *e2 = 0;
    return true;
}

/* digits[0..*n) / 5 in place (long division); returns the remainder. */
static unsigned div5(char *digits, size_t *n)
{
    unsigned rem = 0;
    size_t out = 0;
    for (size_t i = 0; i < *n; i++) {
        unsigned cur = rem * 10 + (unsigned)(digits[i] - '0');
        char q = (char)('0' + cur / 5);
        rem = cur % 5;
        if (out > 0 || q != '0')
            digits[out++] = q;
    }
    *n = out;
    return rem;
}

typedef enum { UNITS_OK, UNITS_FRACTION, UNITS_RANGE } units_result;

/*
 * The magnitude digits x 10^e10 x 2^e2 as a whole number <= INT64_MAX.
 * digits has no leading or trailing zero and is not empty; it is a scratch
 * copy (divided in place). A fraction when e10 < 0: digits x 2^e2 / 10^d is
 * whole only if 5^d divides digits and 2^d divides digits x 2^e2; digits
 * does not end in 0, so 5 | digits makes it odd and d <= e2 is needed.
 */
static units_result to_units(char *digits, size_t n, int64_t e10, int e2, uint64_t *out)
{
    int shift = e2;
    if (e10 < 0) {
        if (-e10 > e2)
            return UNITS_FRACTION;
        for (int64_t i = 0; i < -e10; i++)
            if (div5(digits, &n) != 0)
                return UNITS_FRACTION;
        shift = e2 + (int)e10;
        e10 = 0;
    }
    /* n digits are at least 10^(n-1); 10^19 > INT64_MAX. */
    if ((int64_t)n + e10 > 19)
        return UNITS_RANGE;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(digits[i] - '0'); /* n <= 19: below 10^19 < 2^64 */
    for (int64_t i = 0; i < e10; i++) {
        if (v > (uint64_t)INT64_MAX / 10)
            return UNITS_RANGE;
        v *= 10;
    }
    if (v > (uint64_t)INT64_MAX >> shift)
        return UNITS_RANGE;
    *out = v << shift;
    return UNITS_OK;
}

int kc_quantity_parse(const char *text, size_t len, int scale, int64_t *out, kc_error *err)
{
    if (!out || (!text && len > 0))
        return kc_error_set(err, KC_ERR_INVALID_ARG, "kc_quantity_parse: no text or no result");
    if (len == 0)
        return kc_error_set(err, KC_ERR_INVALID_ARG, "empty quantity");
    size_t pos = 0;
    bool neg = false;
    if (text[0] == '-' || text[0] == '+')
        neg = text[pos++] == '-';
    while (pos < len && text[pos] == '0')
        pos++;
    if (pos == len) { /* "0", "-000", "+": zero, with nothing after to check */
        *out = 0;
        return KC_OK;
    }
    size_t int_start = pos;
    while (pos < len && is_digit(text[pos]))
        pos++;
    size_t int_len = pos - int_start, frac_start = pos, frac_len = 0;
    if (pos < len && text[pos] == '.') {
        frac_start = ++pos;
        while (pos < len && is_digit(text[pos]))
            pos++;
        frac_len = pos - frac_start;
    }
    size_t suffix_start = pos;
    while (pos < len && text[pos] != '\0' && strchr("eEinumkKMGTP", text[pos]))
        pos++;
    if (pos < len && (text[pos] == '-' || text[pos] == '+'))
        pos++;
    while (pos < len && is_digit(text[pos]))
        pos++;
    if (pos < len)
        return fail(err, text, len, "is not a quantity ([+-]digits[.digits][suffix])");
    int64_t e10 = 0, raw = 0;
    int e2 = 0;
    if (!interpret_suffix(text + suffix_start, len - suffix_start, &e10, &e2, &raw))
        return fail(err, text, len, "has an unknown suffix");
    /*
     * No digit at all ("e-10", "-.e-10"): Kubernetes takes it as zero, except
     * with an exponent below -9 after cutting it to 32 bits, where it parses
     * the number part on its own and refuses it (found by comparing the
     * fuzz_quantity corpus with resource.ParseQuantity).
     */
    if ((int32_t)(uint32_t)(uint64_t)raw < -9) {
        bool digit = false;
        for (size_t i = 0; i < suffix_start && !digit; i++)
            digit = is_digit(text[i]);
        if (!digit)
            return fail(err, text, len, "is not a quantity (no digits before the exponent)");
    }

    /* The digits of integer and fraction, without leading or trailing zeros. */
    const char *ip = text + int_start, *fp = text + frac_start;
    size_t total = int_len + frac_len, first = 0, end = total;
#define DIGIT(i) ((i) < int_len ? ip[(i)] : fp[(i)-int_len])
    while (first < end && DIGIT(first) == '0')
        first++;
    while (end > first && DIGIT(end - 1) == '0')
        end--;
    if (first == end) {
        *out = 0;
        return KC_OK;
    }
    /* value = digits[first..end) x 10^(e10 - frac_len + zeros cut at the end - scale) */
    int64_t exp = e10 - (int64_t)frac_len + (int64_t)(total - end) - scale;
    if (exp > EXP_CLAMP)
        exp = EXP_CLAMP;
    if (exp < -EXP_CLAMP)
        exp = -EXP_CLAMP;
    /* Past 64 significant digits (at least 10^64) a value that is whole is
     * out of range: at most 60 divisions by 5 (see to_units) leave more than
     * 2^63. Whether it is whole is not worked out then: fraction as to_units
     * would say first, else range. */
    size_t n = end - first;
    units_result r;
    uint64_t v = 0;
    if (n > 64) {
        r = exp < 0 && -exp > e2 ? UNITS_FRACTION : UNITS_RANGE;
    } else {
        char digits[64];
        for (size_t i = 0; i < n; i++)
            digits[i] = DIGIT(first + i);
        r = to_units(digits, n, exp, e2, &v);
    }
#undef DIGIT
    if (r == UNITS_RANGE)
        return fail(err, text, len, "is out of range (more than 2^63-1 units)");
    if (r == UNITS_FRACTION) {
        char why[64];
        snprintf(why, sizeof(why), "is not a whole number of %s",
                 scale == 0    ? "units"
                 : scale == -3 ? "milli-units"
                               : "the unit asked for");
        return fail(err, text, len, why);
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return KC_OK;
}

int kc_quantity_bytes(const char *text, int64_t *out, kc_error *err)
{
    return kc_quantity_parse(text, text ? strlen(text) : 0, KC_QUANTITY_UNITS, out, err);
}

int kc_quantity_format(int64_t value, int scale, kc_quantity_style style,
                       char buf[KC_QUANTITY_BUFSIZE])
{
    if (!buf || scale < -9 || scale > 0)
        return KC_ERR_INVALID_ARG;
    if (value == 0) {
        strcpy(buf, "0");
        return KC_OK;
    }
    uint64_t mag = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    char *p = buf;
    if (value < 0)
        *p++ = '-';
    /* Binary SI: a whole number of units from 1024 up, with the largest of
     * Ki..Ei that keeps it whole, or none; below 1024, decimal SI. */
    uint64_t unit = 1;
    for (int i = 0; i < -scale; i++)
        unit *= 10;
    if (style == KC_QUANTITY_BINARY_SI && mag % unit == 0 && mag / unit >= 1024) {
        static const char *const bin[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        uint64_t units = mag / unit;
        int k = 6;
        while (k > 0 && (units & (((uint64_t)1 << (10 * k)) - 1)) != 0)
            k--;
        snprintf(p, KC_QUANTITY_BUFSIZE - 1, "%llu%s", (unsigned long long)(units >> (10 * k)),
                 bin[k]);
        return KC_OK;
    }
    /* Decimal SI: the largest power 10^x, x a multiple of 3 in -9..18, that
     * leaves a whole mantissa; the mantissa is |value| with zeros cut or added. */
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)mag);
    int tz = 0;
    while (tz < n - 1 && digits[n - 1 - tz] == '0')
        tz++;
    int top = scale + tz; /* 10^top divides the value */
    int x = top >= 0 ? top / 3 * 3 : -((-top + 2) / 3 * 3);
    if (x > 18)
        x = 18;
    static const char *const dec[] = {"n", "u", "m", "", "k", "M", "G", "T", "P", "E"};
    int keep = n - (x - scale > 0 ? x - scale : 0); /* cut x - scale zeros */
    int add = scale - x > 0 ? scale - x : 0;        /* or add scale - x zeros */
    snprintf(p, KC_QUANTITY_BUFSIZE - 1, "%.*s%.*s%s", keep, digits, add, "000", dec[(x + 9) / 3]);
    return KC_OK;
}
