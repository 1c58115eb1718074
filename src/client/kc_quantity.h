/*
 * kc_quantity - Kubernetes resource quantities ("10Gi", "1.5G", "512Mi",
 * "1e9", "100m") as exact integers.
 *
 * The text is read as k8s.io/apimachinery's resource.ParseQuantity reads it:
 *   [+-] digits [. digits] suffix
 * where suffix is one of the binary SI Ki Mi Gi Ti Pi Ei (powers of 1024),
 * the decimal SI n u m "" k M G T P E (powers of 1000), or a decimal exponent
 * e/E with an optionally signed integer ("1e9", "5E-3"). As there, leading
 * zeros, an empty integer or fraction part ("1.G", ".5") and a number with
 * no digits at all ("+", ".", "Ki": zero) are taken, the last one not before
 * an exponent below -9 ("e-10" is refused there, so here too).
 *
 * Where Kubernetes rounds, these functions refuse: a value that is not a
 * whole number of the unit asked for ("100m" as bytes, "1.5" as bytes) is an
 * error where Quantity.Value() rounds up, and a value outside int64 (either
 * sign: |value| <= INT64_MAX) is an error where Kubernetes caps binary-SI
 * values at 2^63-1, lets Value() wrap, and cuts an exponent to 32 bits
 * ("1e4294967296" is 1 there, out of range here). A value Kubernetes can hold
 * exactly is the same number here.
 *
 * Errors: KC_ERR_INVALID_ARG with a message naming the text (at most 64 bytes
 * of it) and why: "is not a quantity" (syntax), "has an unknown suffix",
 * "is not a whole number of <unit>" and "is out of range". No allocation
 * besides the error message; no global state; any thread.
 */
#ifndef PROVISIO_KC_QUANTITY_H
#define PROVISIO_KC_QUANTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kc_error.h"

/* Scales for kc_quantity_parse: the unit is 10^scale. */
#define KC_QUANTITY_UNITS 0  /* bytes, cores, ... */
#define KC_QUANTITY_MILLI -3 /* millicores */

/*
 * Parse text (len bytes; need not be NUL-terminated; a NUL inside is a
 * syntax error) into *out, the quantity as a whole number of 10^scale units:
 * "1.5Gi" at KC_QUANTITY_UNITS is 1610612736, "250m" at KC_QUANTITY_MILLI is
 * 250. *out is left alone on error.
 */
int kc_quantity_parse(const char *text, size_t len, int scale, int64_t *out, kc_error *err);

/* kc_quantity_parse(text, strlen(text), KC_QUANTITY_UNITS, ...): sizes in bytes. */
int kc_quantity_bytes(const char *text, int64_t *out, kc_error *err);

/* Room for any kc_quantity_format text with its NUL. */
#define KC_QUANTITY_BUFSIZE 48

typedef enum kc_quantity_style {
    KC_QUANTITY_DECIMAL_SI, /* the largest of n u m "" k M G T P E that keeps it whole */
    KC_QUANTITY_BINARY_SI,  /* from 1024 units up: the largest of Ki..Ei that keeps it whole,
                               or none; below, or not whole units, decimal SI */
} kc_quantity_style;

/*
 * The canonical text of value x 10^scale units into buf (KC_QUANTITY_BUFSIZE
 * bytes), as Kubernetes writes a quantity: 10737418240 is "10Gi" in binary
 * style and "10737418240" in decimal; 1500000000 is "1500M" in decimal and
 * "1500000000" in binary style; 100 at KC_QUANTITY_MILLI is "100m". scale
 * must be within -9..0, else KC_ERR_INVALID_ARG. The text parses back
 * (kc_quantity_parse at the same scale) to value.
 */
int kc_quantity_format(int64_t value, int scale, kc_quantity_style style,
                       char buf[KC_QUANTITY_BUFSIZE]);

#endif
