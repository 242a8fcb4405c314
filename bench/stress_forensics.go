package bench

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// checkUpstream compares what the echo received for u's request with what the client
// meant to send. A request body that reached the upstream with a clean end must be
// the whole body, whatever the client saw afterwards: a short one there is the
// truncation this run hunts, even when the client hung up or got an error.
func checkUpstream(u *stressUpload, logs *stressLogs) {
	line, ok := logs.echo[u.Plan.ID]
	if !ok {
		u.Upstream = "no request"
		return
	}
	end := line.fields["body_end"]
	if end != "eof" {
		u.Upstream = "body ended with an error: " + end
		return
	}
	size, sum := line.fields["bytes_in"], line.fields["sha256"]
	if line.fields["content_encoding"] != "" {
		size, sum = line.fields["decoded_bytes"], line.fields["decoded_sha256"]
		if e := line.fields["decode_err"]; e != "" {
			u.markBad(fmt.Sprintf("the upstream got a %s body that ended cleanly but does not decode: %s", line.fields["content_encoding"], e))
			u.Upstream = "complete, undecodable"
			return
		}
	}
	if size != fmt.Sprint(u.Plan.Size) {
		u.markBad(fmt.Sprintf("the upstream got a body that ended cleanly with %s bytes (decoded), the client's has %d", size, u.Plan.Size))
		u.Upstream = "complete, wrong size"
		return
	}
	if u.sum == nil {
		// The client never handed over the whole body, yet a whole one arrived.
		u.markBad(fmt.Sprintf("the upstream got %s bytes and a clean end, but the client sent only %d", size, u.Sent))
		u.Upstream = "complete, never sent"
		return
	}
	if sum != hex.EncodeToString(u.sum) {
		u.markBad(fmt.Sprintf("the upstream got %s bytes that ended cleanly and differ from the client's: sha256 %s, want %x", size, sum, u.sum))
		u.Upstream = "complete, wrong content"
		return
	}
	u.Upstream = "complete"
}

func (u *stressUpload) markBad(why string) {
	if u.Outcome == outcomeBad {
		u.Err += "; " + why
		return
	}
	u.Outcome, u.Err = outcomeBad, why
}

// forensics describes a bad upload: every line the stack wrote about it, and the hop
// where its bytes went missing.
func forensics(u stressUpload, logs *stressLogs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "upload %s: %s\n", u.Plan.ID, u.Err)
	fmt.Fprintf(&b, "plan: %+v\n", u.Plan)
	fmt.Fprintf(&b, "client: status %d, sent %d, response wire %d bytes (%q), decoded %d, ended %s, after %.1fs\n",
		u.Status, u.Sent, u.Wire, u.Encoding, u.Decoded, u.WireEnd, u.Seconds)
	fmt.Fprintf(&b, "where: %s\n", locate(u, logs))
	fmt.Fprintf(&b, "\n--- envoy access log\n%s\n", orNone(logs.envoy[u.Plan.ID].text))
	fmt.Fprintf(&b, "\n--- bodystream\n")
	for _, line := range logs.bodystream[u.Plan.ID] {
		fmt.Fprintln(&b, line.text)
	}
	if len(logs.bodystream[u.Plan.ID]) == 0 {
		fmt.Fprintln(&b, "(none)")
	}
	fmt.Fprintf(&b, "\n--- upstream (echo)\n%s\n", orNone(logs.echo[u.Plan.ID].text))
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// locate names the first hop at which the byte counts disagree: client→Envoy,
// Envoy→bodystream, inside the pipeline, bodystream→Envoy, Envoy→upstream on the
// way up; upstream→bodystream, inside the pipeline, bodystream→Envoy, Envoy→client
// on the way back.
func locate(u stressUpload, logs *stressLogs) string {
	envoy, haveEnvoy := logs.envoy[u.Plan.ID]
	stream, haveStream := logs.streamLine(u.Plan.ID)
	echo, haveEcho := logs.echo[u.Plan.ID]
	for _, line := range logs.bodystream[u.Plan.ID] {
		if line.fields["msg"] == "invariant violated" {
			return fmt.Sprintf("inside bodystream, %s body: invariant %s: %s", line.fields["direction"], line.fields["invariant"], line.fields["err"])
		}
	}
	if !haveEnvoy || !haveStream || !haveEcho {
		return fmt.Sprintf("undetermined: a log line is missing (envoy %v, bodystream %v, upstream %v)", haveEnvoy, haveStream, haveEcho)
	}
	num := func(l logLine, key string) int64 { n, _ := l.int(key); return n }

	// The way up.
	rx, reqIn := num(envoy, "rx"), num(stream, "request.in")
	upIn := num(echo, "bytes_in")
	forwarded, forwardedBy := num(stream, "request.out"), "bodystream sent"
	if stream.fields["request.identity"] == "true" && stream.fields["request.mode"] != "FULL_DUPLEX_STREAMED" {
		forwarded, forwardedBy = rx, "Envoy kept its own copy of"
	}
	switch {
	case u.Plan.Abort == "" && u.Sent == u.Plan.Size && rx < u.Sent:
		return fmt.Sprintf("client→Envoy: the client sent %d bytes, Envoy received %d", u.Sent, rx)
	case stream.fields["request.mode"] != "NONE" && reqIn < rx:
		return fmt.Sprintf("Envoy→bodystream: Envoy received %d request bytes, bodystream got %d", rx, reqIn)
	case stream.fields["request.pipeline_in"] != "" && num(stream, "request.pipeline_in") != reqIn:
		return fmt.Sprintf("inside bodystream: it got %d request bytes, its pipeline took %d", reqIn, num(stream, "request.pipeline_in"))
	case stream.fields["request.identity"] == "false" && num(stream, "request.pipeline_out") != num(stream, "request.out"):
		return fmt.Sprintf("bodystream→Envoy: the request pipeline wrote %d bytes, bodystream sent %d", num(stream, "request.pipeline_out"), num(stream, "request.out"))
	case echo.fields["body_end"] == "eof" && upIn != forwarded:
		return fmt.Sprintf("Envoy→upstream: %s %d request bytes (body ended: %s), the upstream received %d and a clean end",
			forwardedBy, forwarded, stream.fields["request.ended"], upIn)
	case strings.HasPrefix(u.Upstream, "complete,"):
		return fmt.Sprintf("inside the request pipeline: every hop's byte count agrees (%d in, %d forwarded, %d upstream), the content does not", reqIn, forwarded, upIn)
	}

	// The way back.
	upOut, respIn, respOut := num(echo, "bytes_out"), num(stream, "response.in"), num(stream, "response.out")
	tx := num(envoy, "tx")
	toClient, toClientBy := respOut, "bodystream sent"
	if stream.fields["response.identity"] == "true" && stream.fields["response.mode"] != "FULL_DUPLEX_STREAMED" {
		toClient, toClientBy = respIn, "Envoy kept its own copy of"
	}
	switch {
	case stream.fields["response.mode"] != "NONE" && respIn < upOut:
		return fmt.Sprintf("upstream→bodystream: the upstream sent %d response bytes, bodystream got %d", upOut, respIn)
	case stream.fields["response.identity"] == "false" && num(stream, "response.pipeline_out") != respOut:
		return fmt.Sprintf("bodystream→Envoy: the response pipeline wrote %d bytes, bodystream sent %d", num(stream, "response.pipeline_out"), respOut)
	case tx < toClient:
		return fmt.Sprintf("bodystream→Envoy→client: %s %d response bytes, Envoy sent the client %d", toClientBy, toClient, tx)
	case u.Wire < tx:
		return fmt.Sprintf("Envoy→client: Envoy sent %d response bytes, the client read %d", tx, u.Wire)
	}
	return fmt.Sprintf("inside the response pipeline: every hop's byte count agrees (upstream %d, bodystream %d in / %d out, client %d), the content does not", upOut, respIn, respOut, u.Wire)
}
