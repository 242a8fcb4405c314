package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// problemMarks are the texts that make a log line a problem.
var problemMarks = []string{"invariant violated", "WARNING: DATA RACE", "panic:", "fatal error:"}

// readStressLogs reads the logs of a stopped stack.
func readStressLogs(envoyLog, bodystreamLog, echoLog string) (*stressLogs, error) {
	logs := &stressLogs{envoy: map[string]logLine{}, bodystream: map[string][]logLine{}, echo: map[string]logLine{}}
	err := scanLines(envoyLog, func(text string) {
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
	err = scanLines(bodystreamLog, func(text string) {
		logs.problem("bodystream", text)
		fields := parseLogfmt(text)
		if id := fields["request_id"]; id != "" {
			logs.bodystream[id] = append(logs.bodystream[id], logLine{fields, text})
		}
	})
	if err != nil {
		return nil, err
	}
	err = scanLines(echoLog, func(text string) {
		logs.problem("echo", text)
		fields := parseLogfmt(text)
		if id := fields["request_id"]; id != "" {
			logs.echo[id] = logLine{fields, text}
		}
	})
	return logs, err
}

func (l *stressLogs) problem(process, text string) {
	for _, mark := range problemMarks {
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

func scanLines(path string, each func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		each(sc.Text())
	}
	return sc.Err()
}

// parseLogfmt splits a log/slog text line (key=value, values quoted when they hold
// spaces or quotes) into its fields; groups come out as "group.key".
func parseLogfmt(line string) map[string]string {
	fields := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 || strings.ContainsAny(line[:eq], " \"") {
			break
		}
		key := line[:eq]
		line = line[eq+1:]
		var value string
		if strings.HasPrefix(line, `"`) {
			end := 1
			for end < len(line) && line[end] != '"' {
				if line[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(line) {
				break
			}
			quoted := line[:end+1]
			line = line[end+1:]
			if v, err := strconv.Unquote(quoted); err == nil {
				value = v
			} else {
				value = quoted
			}
		} else {
			end := strings.IndexByte(line, ' ')
			if end < 0 {
				end = len(line)
			}
			value, line = line[:end], line[end:]
		}
		fields[key] = value
	}
	return fields
}
