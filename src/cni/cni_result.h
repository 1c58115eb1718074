/*
 * cni_result - what provisio-cni prints on stdout: the ADD result built from
 * the claims' status, the VERSION answer, and the reading of prevResult for
 * CHECK.
 *
 * An IPAM result (CNI specification 1.1, "Success"; the same shape back to
 * 0.3.0):
 *   {"cniVersion": "1.1.0",
 *    "ips": [{"address": "10.20.0.5/24", "gateway": "10.20.0.1"}, ...],
 *    "routes": [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}, ...],
 *    "dns": {}}
 * One ips entry per claim, in pool order; routes are the pools' routes
 * (status.routes of each claim), without duplicates. Versions before 1.0.0
 * also carry "version": "4" or "6" in each ips entry. No "interface" index:
 * the plugin that delegates knows the interfaces, an IPAM plugin does not.
 *
 * Addresses taken from a claim are checked (a CIDR whose address and prefix
 * parse with inet_pton), so a status the plugin cannot vouch for is an error,
 * never a result.
 *
 * Ownership: returned texts are malloc'd, the caller frees; json-c objects
 * passed in are borrowed. Threading: none.
 */
#ifndef PROVISIO_CNI_RESULT_H
#define PROVISIO_CNI_RESULT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "cni_error.h"

/*
 * The ADD result for cniVersion version (one of cni_supported_versions) from
 * the n claim statuses (status objects of Ready IPClaims: address, gateway,
 * routes). names[i] names claim i in messages. *out receives the JSON text.
 * Returns 0, or -CNI_ERR_INTERNAL when a status has no valid address (the
 * message names the claim) or memory runs out.
 */
int cni_result_encode(const char *version, json_object *const *statuses, const char *const *names,
                      size_t n, char **out, cni_error *err);

/* The VERSION answer: {"cniVersion": "1.1.0", "supportedVersions": [...]}. NULL on OOM. */
char *cni_result_version(void);

/*
 * Parse a CIDR ("10.20.0.5/24", "fd00::5/64") into its family (4 or 6),
 * address bytes (16 bytes, v4 in the first 4) and prefix length. s borrowed.
 * Returns false when s is not a CIDR.
 */
bool cni_result_parse_cidr(const char *s, int *family, unsigned char addr[16], int *prefix);

/*
 * True when prev (a prevResult object, borrowed) lists cidr (borrowed) in
 * its ips[].address: same family, address and prefix, whatever the spelling
 * ("fd00::05/64" equals "fd00::5/64").
 */
bool cni_result_has_address(json_object *prev, const char *cidr);

#endif
