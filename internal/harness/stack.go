// Package stack starts the whole bodystream stack — echo upstream, bodystream and a
// real Envoy — as processes on free loopback ports, for end-to-end tests and the bench.
package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The ports resources/envoy.yaml uses; Start rewrites them to free ones.
const (
	EnvoyListenPort = 18080
	EnvoyAdminPort  = 9901
	BodystreamPort  = 50051
	EchoPort        = 18081
)

// Options say what to start.
type Options struct {
	// Root is the module root (holds go.mod); found from the working directory if empty.
	Root string
	// Envoy is the envoy binary; from $ENVOY or .tools/envoy if empty.
	Envoy string
	// EnvoyConfig is the envoy.yaml to run (default resources/envoy.yaml).
	EnvoyConfig string
	// BodystreamArgs are extra flags for bodystream, e.g. -config FILE.
	BodystreamArgs []string
	// BodystreamEnv is added to bodystream's environment, e.g. GOMAXPROCS=1.
	BodystreamEnv []string
	// Race builds bodystream and echo with the race detector.
	Race bool
	// EchoArgs are extra flags for the echo upstream.
	EchoArgs []string
	// Dir receives logs, binaries and generated files (a temporary dir if empty).
	Dir string
	// Concurrency is Envoy's worker count (default 1; this machine has 2 cores).
	Concurrency int
	// NoBodystream leaves bodystream out, for an EnvoyConfig without its port (e.g.
	// one whose ext_proc cluster points at an Extra instead).
	NoBodystream bool
	// Extras are further processes started after bodystream and before Envoy.
	Extras []Extra
	// BinDir, if set, holds bodystream and echo built already (see Build), and Start
	// builds nothing: a bench that starts many stacks builds once, and keeps measuring
	// the same binaries while the source tree changes under it.
	BinDir string
}

// Extra is a further process of the stack, such as another ext_proc server for the
// bench to compare against.
type Extra struct {
	// Name names the process and its log file.
	Name string
	// Path is the program; Args its arguments. The stack appends -ready-file FILE and
	// expects the program to write its listen address there (a bare address or
	// addr=ADDR) once it serves.
	Path string
	Args []string
	// Port is the port_value in EnvoyConfig that stands for this process's address;
	// 0 if Envoy does not talk to it.
	Port int
}

// Stack is a running stack.
type Stack struct {
	// URL is Envoy's listener, e.g. http://127.0.0.1:40123.
	URL string
	// AdminURL is Envoy's admin interface.
	AdminURL string
	// BodystreamAddr and EchoAddr are the two Go processes' addresses.
	BodystreamAddr, EchoAddr, MetricsAddr string
	Dir                                   string
	procs                                 []*Process
}

// Process is one started program.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
}

// Pid is the process id, for sampling /proc.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Processes returns echo, bodystream (unless Options.NoBodystream), the extras and
// envoy, in that order.
func (s *Stack) Processes() []*Process { return s.procs }

// Process returns the process of that name, or nil.
func (s *Stack) Process(name string) *Process {
	for _, p := range s.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// FindRoot walks up from the working directory to the directory holding go.mod.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FindEnvoy returns $ENVOY, else the binary the Makefile installs under .tools/.
func FindEnvoy(root string) (string, error) {
	if p := os.Getenv("ENVOY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ENVOY=%s: %w", p, err)
		}
		return p, nil
	}
	p := filepath.Join(root, ".tools", "envoy", "envoy", "_bin", "envoy")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Envoy binary at %s (run `make envoy` or set ENVOY): %w", p, err)
	}
	return p, nil
}

// Build compiles cmd/bodystream and cmd/echo into dir, with the race detector if race.
func Build(ctx context.Context, root, dir string, race bool) error {
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/bodystream", "./cmd/echo")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// Start builds and starts echo, bodystream and Envoy and waits until all three serve.
// Stop ends them; Start stops what it started when it fails.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if opts.Root == "" {
		if opts.Root, err = FindRoot(); err != nil {
			return nil, err
		}
	}
	if opts.Envoy == "" {
		if opts.Envoy, err = FindEnvoy(opts.Root); err != nil {
			return nil, err
		}
	}
	if opts.EnvoyConfig == "" {
		opts.EnvoyConfig = filepath.Join(opts.Root, "resources", "envoy.yaml")
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "bodystream-stack-"); err != nil {
			return nil, err
		}
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 1
	}
	s = &Stack{Dir: opts.Dir}
	defer func() {
		if err != nil {
			s.Stop()
			err = fmt.Errorf("%w\n%s", err, s.Logs(40))
		}
	}()
	binDir := opts.BinDir
	if binDir == "" {
		binDir = opts.Dir
		if err := Build(ctx, opts.Root, binDir, opts.Race); err != nil {
			return s, err
		}
	}

	echoReady := filepath.Join(opts.Dir, "echo.ready")
	echo, err := s.start("echo", filepath.Join(binDir, "echo"), nil, append([]string{"-listen", "127.0.0.1:0", "-ready-file", echoReady}, opts.EchoArgs...)...)
	if err != nil {
		return s, err
	}
	ports := map[int]string{EnvoyListenPort: "0", EnvoyAdminPort: "0"}
	if !opts.NoBodystream {
		bsReady := filepath.Join(opts.Dir, "bodystream.ready")
		args := append([]string{"-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0", "-ready-file", bsReady}, opts.BodystreamArgs...)
		bodystream, err := s.start("bodystream", filepath.Join(binDir, "bodystream"), opts.BodystreamEnv, args...)
		if err != nil {
			return s, err
		}
		bsFields, err := waitReadyFile(ctx, bsReady, bodystream)
		if err != nil {
			return s, err
		}
		s.BodystreamAddr, s.MetricsAddr = bsFields["grpc"], bsFields["metrics"]
		ports[BodystreamPort] = portOf(s.BodystreamAddr)
	}
	echoFields, err := waitReadyFile(ctx, echoReady, echo)
	if err != nil {
		return s, err
	}
	s.EchoAddr = echoFields["addr"]
	ports[EchoPort] = portOf(s.EchoAddr)
	for _, extra := range opts.Extras {
		ready := filepath.Join(opts.Dir, extra.Name+".ready")
		p, err := s.start(extra.Name, extra.Path, nil, append(slices.Clone(extra.Args), "-ready-file", ready)...)
		if err != nil {
			return s, err
		}
		fields, err := waitReadyFile(ctx, ready, p)
		if err != nil {
			return s, err
		}
		if extra.Port != 0 {
			ports[extra.Port] = portOf(fields["addr"])
		}
	}

	envoyConfig, err := RewritePorts(opts.EnvoyConfig, ports)
	if err != nil {
		return s, err
	}
	configPath := filepath.Join(opts.Dir, "envoy.yaml")
	if err := os.WriteFile(configPath, envoyConfig, 0o644); err != nil {
		return s, err
	}
	adminPath := filepath.Join(opts.Dir, "envoy.admin")
	envoy, err := s.start("envoy", opts.Envoy, nil, "-c", configPath, "--concurrency", strconv.Itoa(opts.Concurrency),
		"--disable-hot-restart", "--admin-address-path", adminPath, "--log-level", "warn")
	if err != nil {
		return s, err
	}
	if err := s.waitEnvoy(ctx, envoy, adminPath); err != nil {
		return s, err
	}
	return s, nil
}

func (s *Stack) start(name, path string, env []string, args ...string) (*Process, error) {
	logPath := filepath.Join(s.Dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that a Ctrl-C meant for the bench reaches the children
	// through Stop, in order, and a killed group leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	return p, nil
}

// waitReadyFile waits for a ready file of key=value lines, or for the process to die.
func waitReadyFile(ctx context.Context, path string, p *Process) (map[string]string, error) {
	return poll(ctx, p, func() (map[string]string, bool) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, false
		}
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				fields[k] = v
			} else if line := strings.TrimSpace(sc.Text()); line != "" {
				fields["addr"] = line
			}
		}
		return fields, true
	})
}

// waitEnvoy waits until Envoy's admin says LIVE and reads the listener's real port.
func (s *Stack) waitEnvoy(ctx context.Context, envoy *Process, adminPath string) error {
	admin, err := poll(ctx, envoy, func() (string, bool) {
		data, err := os.ReadFile(adminPath)
		if err != nil || len(data) == 0 {
			return "", false
		}
		resp, err := http.Get("http://" + strings.TrimSpace(string(data)) + "/ready")
		if err != nil {
			return "", false
		}
		resp.Body.Close()
		return strings.TrimSpace(string(data)), resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return err
	}
	s.AdminURL = "http://" + admin
	resp, err := http.Get(s.AdminURL + "/listeners?format=json")
	if err != nil {
		return fmt.Errorf("envoy listeners: %w", err)
	}
	defer resp.Body.Close()
	var listeners struct {
		ListenerStatuses []struct {
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&listeners); err != nil {
		return fmt.Errorf("envoy listeners: %w", err)
	}
	if len(listeners.ListenerStatuses) == 0 {
		return errors.New("envoy has no listener")
	}
	sa := listeners.ListenerStatuses[0].LocalAddress.SocketAddress
	s.URL = fmt.Sprintf("http://%s", net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)))
	return nil
}

// poll checks ready every few milliseconds until it succeeds, the process exits, ctx
// ends or 30 s pass. Processes in other address spaces offer nothing to wait on but
// their files and ports, hence polling.
func poll[T any](ctx context.Context, p *Process, ready func() (T, bool)) (T, error) {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, ok := ready(); ok {
			return v, nil
		}
		var zero T
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-p.done:
			return zero, fmt.Errorf("%s exited before it was ready: %v", p.Name, p.err)
		case <-deadline.C:
			return zero, fmt.Errorf("%s not ready after 30s", p.Name)
		case <-tick.C:
		}
	}
}

// Stop ends the processes, newest first (Envoy, then bodystream, then echo): SIGTERM,
// then SIGKILL after five seconds. It returns the first unexpected exit.
func (s *Stack) Stop() error {
	var errs []error
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		select {
		case <-p.done:
			if p.err != nil {
				errs = append(errs, fmt.Errorf("%s had exited: %w", p.Name, p.err))
			}
			continue
		default:
		}
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop on SIGTERM", p.Name))
		}
	}
	return errors.Join(errs...)
}

// Logs returns the last lines of every process's log, for failure messages.
func (s *Stack) Logs(lines int) string {
	var b strings.Builder
	for _, p := range s.procs {
		data, _ := os.ReadFile(p.LogPath)
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", p.Name, p.LogPath, strings.Join(all[max(0, len(all)-lines):], "\n"))
	}
	return b.String()
}

// RewritePorts returns the envoy.yaml at path with each `port_value: N` of the map
// replaced. Every port of the map must occur, so a changed file cannot silently run
// on the fixed ports.
func RewritePorts(path string, ports map[int]string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(data)
	for from, to := range ports {
		old := fmt.Sprintf("port_value: %d}", from)
		if !strings.Contains(text, old) {
			return nil, fmt.Errorf("%s: no %q to rewrite", path, old)
		}
		text = strings.ReplaceAll(text, old, "port_value: "+to+"}")
	}
	return []byte(text), nil
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// EnvoyCounters reads Envoy's counters and gauges whose names start with prefix.
func EnvoyCounters(adminURL, prefix string) (map[string]int64, error) {
	resp, err := http.Get(adminURL + "/stats?filter=^" + strings.ReplaceAll(prefix, ".", `\.`))
	if err != nil {
		return nil, fmt.Errorf("envoy stats: %w", err)
	}
	defer resp.Body.Close()
	counters := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			counters[name] = n
		}
	}
	return counters, sc.Err()
}
