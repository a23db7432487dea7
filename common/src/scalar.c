/*
 * scalar — Spring's text form of a typed flat value (see scalar.h).
 *
 * The interesting part is Java's Double.toString as specified since Java 19: the shortest
 * decimal that reads back as the same double (when one digit would do, the closest of the one-
 * and two-digit candidates), laid out plainly for 1e-3 <= |v| < 1e7 and as d.dddE<n> otherwise,
 * always with at least one digit after the point. The shortest digits are found by asking the C
 * library for correctly rounded %.*e renderings of growing precision and keeping the first that
 * strtod maps back to the same bits.
 *
 * This module does not own typing (which text becomes which type): that belongs to the parsers.
 */
#include "scalar.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Digits of a decimal d1.d2d3... x 10^exp, without trailing zeros (at least one digit). */
typedef struct {
    char digits[32];
    size_t count;
    int exp;
} decimal;

/* Splits "d.ddde+XX" (what %.*e prints for a finite positive value) into a decimal. */
static bool decimal_from_sci(decimal *out, const char *text)
{
    out->count = 0;
    const char *p = text;
    for (; *p != '\0' && *p != 'e'; p++) {
        if (*p == '.')
            continue;
        if (*p < '0' || *p > '9' || out->count >= sizeof(out->digits) - 1)
            return false;
        out->digits[out->count++] = *p;
    }
    if (*p != 'e' || out->count == 0)
        return false;
    out->exp = atoi(p + 1);
    while (out->count > 1 && out->digits[out->count - 1] == '0')
        out->count--;
    out->digits[out->count] = '\0';
    return true;
}

/* Renders the decimal back as text strtod reads. */
static double decimal_value(const decimal *d)
{
    char text[64];
    snprintf(text, sizeof(text), "%.1s.%se%d", d->digits, d->count > 1 ? d->digits + 1 : "0",
             d->exp);
    return strtod(text, NULL);
}

/* The correctly rounded decimal of `value` with `precision` significant digits. */
static bool decimal_nearest(decimal *out, double value, int precision)
{
    char text[64];
    snprintf(text, sizeof(text), "%.*e", precision - 1, value);
    return decimal_from_sci(out, text);
}

/* Adds one unit in the last of `precision` digits (the decimal is padded with zeros first). */
static void decimal_increment(decimal *d, size_t precision)
{
    while (d->count < precision)
        d->digits[d->count++] = '0';
    d->digits[d->count] = '\0';
    size_t i = d->count;
    while (i > 0) {
        i--;
        if (d->digits[i] != '9') {
            d->digits[i]++;
            break;
        }
        d->digits[i] = '0';
        if (i == 0) {
            /* 99..9 + 1: shift in a leading 1; the trailing zero is dropped below */
            memmove(d->digits + 1, d->digits, d->count);
            d->digits[0] = '1';
            d->count++;
            d->exp++;
        }
    }
    while (d->count > 1 && d->digits[d->count - 1] == '0')
        d->count--;
    d->digits[d->count] = '\0';
}

/*
 * Shortest decimal that reads back as `value` (finite, > 0). At a power of two the gap below is
 * half the gap above, so the nearest candidate of some length may fall outside the rounding
 * interval while the next one up is inside: try that one too, as Java does.
 */
static void decimal_shortest(decimal *out, double value)
{
    int mant_exp;
    bool power_of_two = frexp(value, &mant_exp) == 0.5;
    for (int precision = 1; precision <= 17; precision++) {
        decimal candidate;
        if (!decimal_nearest(&candidate, value, precision))
            break;
        if (decimal_value(&candidate) != value && power_of_two) {
            decimal_increment(&candidate, (size_t)precision);
        }
        if (decimal_value(&candidate) != value)
            continue;
        if (precision == 1) {
            /* Java: when one digit suffices, the closer of the 1- and 2-digit candidates */
            decimal two;
            if (decimal_nearest(&two, value, 2) && decimal_value(&two) == value)
                candidate = two;
        }
        *out = candidate;
        return;
    }
    decimal_nearest(out, value, 17);
}

void scalar_format_double(double value, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return;
    if (isnan(value)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(value)) {
        snprintf(buf, size, "%s", value < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (value == 0) {
        snprintf(buf, size, "%s", signbit(value) ? "-0.0" : "0.0");
        return;
    }

    const char *sign = value < 0 ? "-" : "";
    double magnitude = fabs(value);
    decimal d;
    decimal_shortest(&d, magnitude);

    char text[64];
    const char *rest = d.count > 1 ? d.digits + 1 : "0";
    if (magnitude >= 1e-3 && magnitude < 1e7) {
        if (d.exp >= 0) {
            /* integer part: the first exp+1 digits, zero-padded; at least "0" after the point */
            char int_part[16], frac_part[32];
            size_t int_len = (size_t)d.exp + 1, i;
            for (i = 0; i < int_len && i < sizeof(int_part) - 1; i++)
                int_part[i] = i < d.count ? d.digits[i] : '0';
            int_part[i] = '\0';
            snprintf(frac_part, sizeof(frac_part), "%s",
                     d.count > int_len ? d.digits + int_len : "0");
            snprintf(text, sizeof(text), "%s%s.%s", sign, int_part, frac_part);
        } else {
            snprintf(text, sizeof(text), "%s0.%.*s%s", sign, -d.exp - 1, "000", d.digits);
        }
    } else {
        snprintf(text, sizeof(text), "%s%c.%sE%d", sign, d.digits[0], rest, d.exp);
    }
    snprintf(buf, size, "%s", text);
}

char *scalar_to_text(const json_t *value)
{
    char buf[64];
    const char *text = "";
    size_t len;

    if (value == NULL)
        return strdup("");
    switch (json_typeof(value)) {
    case JSON_STRING: {
        len = json_string_length(value);
        char *copy = malloc(len + 1);
        if (copy != NULL) {
            memcpy(copy, json_string_value(value), len);
            copy[len] = '\0';
        }
        return copy;
    }
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        text = buf;
        break;
    case JSON_REAL:
        scalar_format_double(json_real_value(value), buf, sizeof(buf));
        text = buf;
        break;
    case JSON_TRUE:
        text = "true";
        break;
    case JSON_FALSE:
        text = "false";
        break;
    default:
        break;
    }
    return strdup(text);
}
