package harness

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// ProblemMarks are the texts that make a line of any process's log a problem,
// whichever request it belongs to: a broken invariant, a data race, a panic.
var ProblemMarks = []string{"invariant violated", "WARNING: DATA RACE", "panic:", "fatal error:"}

// ScanLines calls each with every line of the file at path.
func ScanLines(path string, each func(string)) error {
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

// ParseLogfmt splits a log/slog text line (key=value, values quoted when they hold
// spaces or quotes) into its fields; groups come out as "group.key".
func ParseLogfmt(line string) map[string]string {
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
