package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/bodystream/bodystream/internal/harness"
)

// Options is a parsed command line.
type Options struct {
	Scenarios []Scenario
	// Out receives results.json, report.txt, memory.svg and the stacks' logs.
	Out string
	// Root is the module root, for resources/; found from the working directory if empty.
	Root string
	// Envoy is the envoy binary; $ENVOY or .tools/envoy if empty.
	Envoy string
	// EnvoyConcurrency is Envoy's worker count.
	EnvoyConcurrency int
	// Bin holds bodystream and echo already built; empty: build them into Out/bin.
	Bin string
	// File is the body of -body file.
	File string
	// Interval is the sampling period.
	Interval time.Duration
	// Timeout bounds one scenario's load.
	Timeout time.Duration
	// Repeat runs the whole list of scenarios this many times, so that kinds
	// alternate and a disturbance hits one round, not one kind.
	Repeat int
	// Settle is how long to wait, before each scenario, for the rest of the machine
	// to go idle; 0 does not wait.
	Settle time.Duration
	// Attach mode: a running stack instead of a fresh one per scenario.
	Target string         // Envoy's listener URL
	Admin  string         // Envoy's admin URL; empty: no Envoy stats
	Pids   map[string]int // process name → pid to sample
	// Windows change Envoy's windows and buffer limits in every scenario's envoy.yaml.
	Windows Windows
	// List prints the scenarios and exits.
	List bool
	// CPUProfile, if set, receives a CPU profile of the bench itself: the client's
	// share of the machine is worth keeping small.
	CPUProfile string
}

// parseOptions parses the command line. Errors name the flag.
func parseOptions(args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: bench [flags]

Fires concurrent uploads through a real Envoy with bodystream, verifies every
response byte for byte, and samples the memory and CPU of every process.
Each scenario runs on a fresh stack unless -target attaches to a running one.

Scenario kinds: %s

Flags:
`, kindNames())
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenarios", "default", "`list` of scenario kinds, or the preset \"default\", \"full\" or \"many\" (200 and 500 uploads)")
	sizes := fs.String("size", "", "body `sizes`, comma-separated, with units (64MiB,1GiB); overrides the preset")
	concurrency := fs.String("concurrency", "", "concurrent `uploads`, comma-separated (1,10,50); overrides the preset")
	protocol := fs.String("protocol", "", "h1, h2 or both; overrides the preset")
	bodyKind := fs.String("body", "", "random, json or file; overrides each kind's body")
	envoyConfig := fs.String("envoy-config", "", "envoy.yaml `file` for every scenario, instead of each kind's (it must have the kind's routes)")
	bodystreamConfig := fs.String("bodystream-config", "", "bodystream configuration `file` for every scenario, instead of each kind's")
	fs.StringVar(&o.File, "file", "", "upload this `file` (sets -body file; its size unless -size is given)")
	fs.StringVar(&o.Out, "out", "bench/out", "output `directory`")
	fs.StringVar(&o.Envoy, "envoy", "", "envoy `binary` (default $ENVOY or .tools/envoy)")
	fs.StringVar(&o.Bin, "bin", "", "`directory` with bodystream and echo already built (default: build them into -out/bin)")
	fs.IntVar(&o.EnvoyConcurrency, "envoy-concurrency", 2, "Envoy worker `threads`")
	fs.DurationVar(&o.Interval, "interval", 100*time.Millisecond, "sampling `period`")
	fs.DurationVar(&o.Timeout, "timeout", time.Hour, "longest a scenario's load may take (50 × 1 GiB on 2 busy CPUs needs over 15 minutes)")
	fs.IntVar(&o.Repeat, "repeat", 1, "run the scenarios this many `rounds`; the report adds medians")
	fs.DurationVar(&o.Settle, "settle", 0, "before each scenario, wait up to this `long` for the machine to go idle (on a shared machine)")
	fs.StringVar(&o.Target, "target", "", "attach: Envoy listener `URL` of a running stack, e.g. http://127.0.0.1:18080")
	fs.StringVar(&o.Admin, "admin", "", "attach: Envoy admin `URL`, e.g. http://127.0.0.1:9901")
	windows := fs.String("windows", "", "change Envoy's `settings` in each scenario: ext-proc-stream=SIZE,ext-proc-conn=SIZE (the ext_proc cluster's HTTP/2 windows), buffer=SIZE (per_connection_buffer_limit_bytes of the listener and every cluster), ext-proc-buffer=SIZE (that of the ext_proc cluster alone)")
	pids := fs.String("pids", "", "attach: processes to sample, e.g. envoy=123,bodystream=456,echo=789")
	fs.BoolVar(&o.List, "list", false, "print the scenarios and exit")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the bench (the client) to `file`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.EnvoyConcurrency < 1 {
		return nil, fmt.Errorf("-envoy-concurrency: must be at least 1, got %d", o.EnvoyConcurrency)
	}
	if o.Repeat < 1 || o.Repeat > 100 {
		return nil, fmt.Errorf("-repeat: must be between 1 and 100, got %d", o.Repeat)
	}
	if o.Interval < 10*time.Millisecond {
		return nil, fmt.Errorf("-interval: must be at least 10ms, got %s", o.Interval)
	}
	var err error
	if o.Windows, err = parseWindows(*windows); err != nil {
		return nil, fmt.Errorf("-windows: %w", err)
	}
	if o.Windows.set() && o.Target != "" {
		return nil, errors.New("-windows changes the stacks the bench starts, not one it attaches to")
	}
	if o.Pids, err = parsePids(*pids); err != nil {
		return nil, fmt.Errorf("-pids: %w", err)
	}
	if len(o.Pids) > 0 && o.Target == "" {
		return nil, errors.New("-pids needs -target")
	}
	if o.Admin != "" && o.Target == "" {
		return nil, errors.New("-admin needs -target")
	}

	var body harness.BodyKind
	switch {
	case *bodyKind != "":
		body = harness.BodyKind(*bodyKind)
		if body != harness.BodyRandom && body != harness.BodyJSON && body != harness.BodyFile {
			return nil, fmt.Errorf("-body: %q is not random, json or file", *bodyKind)
		}
	case o.File != "":
		body = harness.BodyFile
	}
	var fileSize int64
	if body == harness.BodyFile {
		if o.File == "" {
			return nil, errors.New("-body file needs -file")
		}
		info, err := os.Stat(o.File)
		if err != nil {
			return nil, fmt.Errorf("-file: %w", err)
		}
		fileSize = info.Size()
	}

	var sizeList []int64
	if *sizes != "" {
		if sizeList, err = parseSizes(*sizes); err != nil {
			return nil, fmt.Errorf("-size: %w", err)
		}
	} else if body == harness.BodyFile {
		sizeList = []int64{fileSize}
	}
	for _, s := range sizeList {
		if body == harness.BodyFile && s > fileSize {
			return nil, fmt.Errorf("-size: %s is larger than -file (%s)", sizeName(s), sizeName(fileSize))
		}
	}
	var concurrencyList []int
	if *concurrency != "" {
		if concurrencyList, err = parseInts(*concurrency); err != nil {
			return nil, fmt.Errorf("-concurrency: %w", err)
		}
	}
	var protocols []harness.Protocol
	switch *protocol {
	case "":
	case "h1":
		protocols = []harness.Protocol{harness.H1}
	case "h2":
		protocols = []harness.Protocol{harness.H2}
	case "both":
		protocols = []harness.Protocol{harness.H1, harness.H2}
	default:
		return nil, fmt.Errorf("-protocol: %q is not h1, h2 or both", *protocol)
	}

	o.Scenarios, err = chooseScenarios(*scenarios, sizeList, concurrencyList, protocols)
	if err != nil {
		return nil, fmt.Errorf("-scenarios: %w", err)
	}
	if body != "" {
		for i := range o.Scenarios {
			o.Scenarios[i].Body = body
		}
	}
	for _, c := range []struct {
		flag, path string
		set        func(*Scenario, string)
	}{
		{"-envoy-config", *envoyConfig, func(s *Scenario, p string) { s.EnvoyConfig = p }},
		{"-bodystream-config", *bodystreamConfig, func(s *Scenario, p string) { s.BodystreamConfig = p }},
	} {
		if c.path == "" {
			continue
		}
		abs, err := filepath.Abs(c.path)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.flag, err)
		}
		for i := range o.Scenarios {
			c.set(&o.Scenarios[i], abs)
		}
	}
	for _, s := range o.Scenarios {
		if s.Seed && s.Size*int64(s.Concurrency) > seedMaxTotal {
			return nil, fmt.Errorf("%s: the seed server holds every body whole; keep size × concurrency within %s", s.Title(), sizeName(seedMaxTotal))
		}
	}
	return o, nil
}

// chooseScenarios resolves -scenarios: a preset, unless a load flag is given or kinds
// are named; then every chosen kind under every combination of the load flags, with
// 64MiB, 10 uploads and h1 for those not given.
func chooseScenarios(names string, sizes []int64, concurrency []int, protocols []harness.Protocol) ([]Scenario, error) {
	custom := sizes != nil || concurrency != nil || protocols != nil
	if !custom {
		if list, ok := preset(names); ok {
			return list, nil
		}
	}
	var chosen []Kind
	switch names {
	case "default", "full":
		chosen = presetKinds()
	case "many":
		for _, name := range manyKinds {
			k, _ := kindNamed(name)
			chosen = append(chosen, k)
		}
	default:
		for name := range strings.SplitSeq(names, ",") {
			k, ok := kindNamed(strings.TrimSpace(name))
			if !ok {
				return nil, fmt.Errorf("unknown kind %q (have %s)", name, kindNames())
			}
			chosen = append(chosen, k)
		}
	}
	if sizes == nil {
		sizes = []int64{64 << 20}
	}
	if concurrency == nil {
		concurrency = []int{10}
	}
	if protocols == nil {
		protocols = []harness.Protocol{harness.H1}
	}
	var list []Scenario
	for _, proto := range protocols {
		for _, size := range sizes {
			for _, c := range concurrency {
				for _, k := range chosen {
					// All kinds, as opposed to a seed asked for by name, leave out
					// seed loads its server cannot hold; parseOptions refuses those.
					if k.Seed && size*int64(c) > seedMaxTotal && (names == "default" || names == "full") {
						continue
					}
					list = append(list, Scenario{Kind: k, Size: size, Concurrency: c, Protocol: proto})
				}
			}
		}
	}
	return list, nil
}

// parseSizes parses "64MiB,1GiB"; go-humanize reads both SI (MB) and IEC (MiB) units.
func parseSizes(text string) ([]int64, error) {
	var sizes []int64
	for part := range strings.SplitSeq(text, ",") {
		n, err := humanize.ParseBytes(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%q is not a size like 64MiB: %w", part, err)
		}
		if n == 0 || n > 1<<50 {
			return nil, fmt.Errorf("%q: must be between 1 byte and 1PiB", part)
		}
		sizes = append(sizes, int64(n))
	}
	return sizes, nil
}

func parseInts(text string) ([]int, error) {
	var list []int
	for part := range strings.SplitSeq(text, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 10_000 {
			return nil, fmt.Errorf("%q is not a number from 1 to 10000", part)
		}
		list = append(list, n)
	}
	return list, nil
}

// parsePids parses "envoy=123,bodystream=456".
func parsePids(text string) (map[string]int, error) {
	if text == "" {
		return nil, nil
	}
	pids := map[string]int{}
	for part := range strings.SplitSeq(text, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		pid, err := strconv.Atoi(value)
		if !ok || name == "" || err != nil || pid < 1 {
			return nil, fmt.Errorf("%q is not name=pid", part)
		}
		pids[name] = pid
	}
	return pids, nil
}
