package stages

import (
	"net/textproto"
	"strconv"
	"strings"
)

// Content negotiation of a response's content-coding (RFC 9110 §12.5.3).

// acceptEncoding is a parsed Accept-Encoding field: each coding's weight (0 to 1),
// keyed by lower-case name.
type acceptEncoding struct {
	// present is false when the request has no Accept-Encoding field.
	present  bool
	q        map[string]float64
	wildcard float64 // weight of "*", or -1 when the field does not name it
}

// parseAcceptEncoding reads every Accept-Encoding field of h. Names compare without
// case; odd spacing is tolerated; an element whose weight does not parse is ignored
// (as Envoy's compressor does), so a malformed element never makes a coding
// acceptable.
func parseAcceptEncoding(h textproto.MIMEHeader) acceptEncoding {
	values, ok := h["Accept-Encoding"]
	a := acceptEncoding{present: ok, wildcard: -1}
	for _, value := range values {
		for element := range strings.SplitSeq(value, ",") {
			name, params, _ := strings.Cut(element, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			q, ok := parseQuality(params)
			if !ok {
				continue
			}
			if name == "x-gzip" { // RFC 9110 §8.4.1.3: the same coding
				name = "gzip"
			}
			if name == "*" {
				a.wildcard = max(a.wildcard, q)
				continue
			}
			if a.q == nil {
				a.q = make(map[string]float64)
			}
			if old, seen := a.q[name]; !seen || q > old {
				a.q[name] = q
			}
		}
	}
	return a
}

// parseQuality reads the weight among an element's parameters ("q=0.5"), 1 when
// there is none. Other parameters are ignored.
func parseQuality(params string) (float64, bool) {
	q := 1.0
	for param := range strings.SplitSeq(params, ";") {
		key, value, found := strings.Cut(param, "=")
		if !strings.EqualFold(strings.TrimSpace(key), "q") {
			continue
		}
		if !found {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || !(f >= 0 && f <= 1) {
			return 0, false
		}
		q = f
	}
	return q, true
}

// quality is how much the client wants coding name: its own weight, else that of
// "*", else 0. identity is acceptable unless excluded by name or by "*;q=0".
func (a acceptEncoding) quality(name string) float64 {
	if q, ok := a.q[name]; ok {
		return q
	}
	if a.wildcard >= 0 {
		return a.wildcard
	}
	if name == "identity" {
		return 1
	}
	return 0
}

// choose returns the offered coding to use, or "" for identity. offered is the
// route's preference order. A request without Accept-Encoding gets identity: RFC 9110
// would allow any coding, but a client that says nothing may well not decode one,
// and Envoy's compressor answers it the same way. The coding with the highest weight
// wins, ties going to the route's order; identity wins only when the field names it
// with a strictly higher weight than every offered coding (its implicit
// acceptability is no preference). A coding of weight 0 is never chosen, so when
// nothing acceptable is offered the answer is identity even if the client excluded it
// too ("identity;q=0, *;q=0"): sending a coding it refused would be worse.
func (a acceptEncoding) choose(offered []string) string {
	if !a.present {
		return ""
	}
	best, bestQ := "", 0.0
	for _, name := range offered {
		if q := a.quality(name); q > bestQ {
			best, bestQ = name, q
		}
	}
	if identityQ, named := a.q["identity"]; best == "" || named && identityQ > bestQ {
		return ""
	}
	return best
}
