// Package etag makes strong entity tags and answers If-None-Match, for
// the GET routes whose whole body is known before it is sent.
package etag

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Of is a strong validator of body: the same bytes, the same tag. Deriving
// it from what is sent keeps it right whatever changes the bytes.
func Of(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// NoneMatch reports whether If-None-Match fields (each a comma-separated
// list of entity tags, or "*") name tag. RFC 9110 compares them weakly
// here, so W/"x" matches "x".
func NoneMatch(fields []string, tag string) bool {
	for _, f := range fields {
		for t := range strings.SplitSeq(f, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == tag {
				return true
			}
		}
	}
	return false
}
