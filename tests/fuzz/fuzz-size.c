/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: mfs_parse_size(), the parser of every size and rate
 * the user gives (-o speed= and chunk=, mirrorfsctl, the control
 * protocol's strings such as "50M").
 *
 * Besides crashes and sanitizer reports, the result is checked against a
 * reference parser written here from the grammar, so that a wrong value
 * or a wrong acceptance is a finding too:
 *
 *     DIGITS [ (K|M|G|T) [i|I] [B|b] ]       case-insensitive unit
 *
 * with no sign, no space, and a value that fits in 64 bits (ERANGE
 * otherwise).  See run-fuzz.sh.
 */
#define _GNU_SOURCE
#include "mfs.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference: 0 and *out, or -EINVAL / -ERANGE. */
static int reference(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10) {
			/* Too many digits; the rest must still be well formed for ERANGE. */
			while (isdigit((unsigned char)*p))
				p++;
			return -ERANGE;
		}
		v = v * 10 + d;
	}
	if (*p) {
		switch (toupper((unsigned char)*p)) {
		case 'K':
			shift = 10;
			break;
		case 'M':
			shift = 20;
			break;
		case 'G':
			shift = 30;
			break;
		case 'T':
			shift = 40;
			break;
		default:
			return -EINVAL;
		}
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
		if (*p == 'B' || *p == 'b')
			p++;
		if (*p)
			return -EINVAL;
	}
	/* Sizes travel as signed 64-bit JSON numbers: no more than INT64_MAX. */
	if (v > ((uint64_t)INT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	uint64_t got = 0xdeadbeef, want = 0;
	int r, ref;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	r = mfs_parse_size(text, &got);
	ref = reference(text, &want);
	/* An overflow in the digits may be EINVAL or ERANGE when garbage follows. */
	if (ref == -ERANGE && r == -EINVAL)
		ref = r;
	if ((r == 0) != (ref == 0) || (r == 0 && got != want) || (r < 0 && r != ref)) {
		fprintf(stderr, "mfs_parse_size(\"%s\") = %d, %llu; the grammar says %d, %llu\n",
		        text, r, (unsigned long long)got, ref, (unsigned long long)want);
		abort();
	}
	free(text);
	return 0;
}
