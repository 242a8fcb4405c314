package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/bodystream/bodystream/internal/harness"
)

// stressLogs is what the stack's three processes wrote about a run, by request id.
type stressLogs struct {
	envoy      map[string]logLine   // Envoy's JSON access log line
	bodystream map[string][]logLine // every bodystream line naming the request
	echo       map[string]logLine   // the echo's -digest line
	// problems are lines that fail a run whichever request they belong to: a broken
	// invariant, a data race, a panic.
	problems []string
}

// logLine is one log line: its fields, and the line itself for the forensics.
type logLine struct {
	fields map[string]string
	text   string
}

func (l logLine) int(key string) (int64, bool) {
	n, err := strconv.ParseInt(l.fields[key], 10, 64)
	return n, err == nil
}

// readStressLogs reads the logs of a stopped stack.
func readStressLogs(envoyLog, bodystreamLog, echoLog string) (*stressLogs, error) {
	logs := &stressLogs{envoy: map[string]logLine{}, bodystream: map[string][]logLine{}, echo: map[string]logLine{}}
	err := harness.ScanLines(envoyLog, func(text string) {
		logs.problem("envoy", text)
		if !strings.HasPrefix(text, "{") {
			return
		}
		var raw map[string]any
		if json.Unmarshal([]byte(text), &raw) != nil || raw["access_log"] != "stress" {
			return
		}
		fields := map[string]string{}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				fields[k] = v
			case float64:
				fields[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case nil:
			default:
				fields[k] = fmt.Sprint(v)
			}
		}
		logs.envoy[fields["request_id"]] = logLine{fields, text}
	})
	if err != nil {
		return nil, err
	}
	err = harness.ScanLines(bodystreamLog, func(text string) {
		logs.problem("bodystream", text)
		fields := harness.ParseLogfmt(text)
		if id := fields["request_id"]; id != "" {
			logs.bodystream[id] = append(logs.bodystream[id], logLine{fields, text})
		}
	})
	if err != nil {
		return nil, err
	}
	err = harness.ScanLines(echoLog, func(text string) {
		logs.problem("echo", text)
		fields := harness.ParseLogfmt(text)
		if id := fields["request_id"]; id != "" {
			logs.echo[id] = logLine{fields, text}
		}
	})
	return logs, err
}

func (l *stressLogs) problem(process, text string) {
	for _, mark := range harness.ProblemMarks {
		if strings.Contains(text, mark) {
			l.problems = append(l.problems, process+": "+text)
			return
		}
	}
}

// streamLine is bodystream's end-of-stream line for a request, if it wrote one.
func (l *stressLogs) streamLine(id string) (logLine, bool) {
	for _, line := range l.bodystream[id] {
		if line.fields["msg"] == "ext_proc stream ended" {
			return line, true
		}
	}
	return logLine{}, false
}
