package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

// Options say what Start starts.
type Options struct {
	// Root is the module root (holds go.mod); found from the working directory if empty.
	Root string
	// Envoy is the envoy binary; from $ENVOY or .tools/envoy if empty.
	Envoy string
	// EnvoyConfig is the envoy.yaml to run (default resources/envoy.yaml). Start runs
	// a copy with its listeners and admin on free loopback ports and its bodystream
	// and echo clusters (and those of Extras) pointing at the processes it started.
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
	// NoBodystream leaves bodystream out, for an EnvoyConfig without its cluster (e.g.
	// one whose ext_proc cluster points at an Extra instead).
	NoBodystream bool
	// Extras are further processes started after bodystream and before Envoy.
	Extras []Extra
	// Replicas is how many bodystream processes to start (default 1). With more than
	// one they are named bodystream-1, bodystream-2, ..., and Envoy's bodystream
	// cluster gets one endpoint each.
	Replicas int
	// BodystreamClusterFields, if set, is a YAML file of fields set on EnvoyConfig's
	// bodystream cluster (see EnvoyConfig.SetClusterFields), e.g. faster health checks
	// and outlier detection for a test of several replicas.
	BodystreamClusterFields string
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
	// expects the program to write its address there (see package readyfile) once it
	// serves.
	Path string
	Args []string
	// Cluster is the cluster of EnvoyConfig that reaches this process; empty if Envoy
	// does not talk to it.
	Cluster string
}

// Stack is a running stack.
type Stack struct {
	// URL is Envoy's listener, e.g. http://127.0.0.1:40123.
	URL string
	// AdminURL is Envoy's admin interface, and Admin a client of it.
	AdminURL string
	Admin    *Admin
	// BodystreamAddr and EchoAddr are the two Go processes' addresses; MetricsAddr is
	// bodystream's metrics. With several replicas they are the first replica's.
	BodystreamAddr, EchoAddr, MetricsAddr string
	// Replicas are the bodystream processes, one with Options.Replicas unset.
	Replicas []*Replica
	Dir      string

	mu    sync.Mutex // guards procs: Restart replaces one while others read them
	procs []*Process
}

// Replica is one bodystream process and the addresses it keeps when restarted.
type Replica struct {
	Name, Addr, MetricsAddr string
	path                    string
	env, args               []string
}

// Processes returns echo, bodystream (unless Options.NoBodystream), the extras and
// envoy, in that order.
func (s *Stack) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.procs)
}

// Process returns the process of that name, or nil.
func (s *Stack) Process(name string) *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
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
	if err := opts.defaults(); err != nil {
		return nil, err
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

	clusters := map[string]string{}
	// The echo starts first and is waited for last: its start overlaps bodystream's.
	echo, err := s.start("echo", filepath.Join(binDir, "echo"), nil, append([]string{"-listen", "127.0.0.1:0"}, opts.EchoArgs...))
	if err != nil {
		return s, err
	}
	var endpoints []string
	if !opts.NoBodystream {
		if err := s.startReplicas(ctx, opts, filepath.Join(binDir, "bodystream")); err != nil {
			return s, err
		}
		s.BodystreamAddr, s.MetricsAddr = s.Replicas[0].Addr, s.Replicas[0].MetricsAddr
		clusters["bodystream"] = s.BodystreamAddr
		for _, r := range s.Replicas {
			endpoints = append(endpoints, r.Addr)
		}
	}
	addrs, err := s.waitReady(ctx, echo)
	if err != nil {
		return s, err
	}
	s.EchoAddr = addrs.Addr
	clusters["echo"] = s.EchoAddr
	for _, extra := range opts.Extras {
		p, err := s.start(extra.Name, extra.Path, nil, slices.Clone(extra.Args))
		if err != nil {
			return s, err
		}
		addrs, err := s.waitReady(ctx, p)
		if err != nil {
			return s, err
		}
		if extra.Cluster != "" {
			clusters[extra.Cluster] = addrs.Addr
		}
	}

	configPath := filepath.Join(opts.Dir, "envoy.yaml")
	if err := renderOnLoopback(opts.EnvoyConfig, configPath, clusters, endpoints, opts.BodystreamClusterFields); err != nil {
		return s, err
	}
	adminPath := filepath.Join(opts.Dir, "envoy.admin")
	envoy, err := s.start("envoy", opts.Envoy, nil, []string{"-c", configPath, "--concurrency", strconv.Itoa(opts.Concurrency),
		"--disable-hot-restart", "--admin-address-path", adminPath, "--log-level", "warn"})
	if err != nil {
		return s, err
	}
	return s, s.waitEnvoy(ctx, envoy, adminPath)
}

func (o *Options) defaults() (err error) {
	if o.Root == "" {
		if o.Root, err = FindRoot(); err != nil {
			return err
		}
	}
	if o.Envoy == "" {
		if o.Envoy, err = FindEnvoy(o.Root); err != nil {
			return err
		}
	}
	if o.EnvoyConfig == "" {
		o.EnvoyConfig = filepath.Join(o.Root, "resources", "envoy.yaml")
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "bodystream-stack-"); err != nil {
			return err
		}
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	return nil
}

// startReplicas starts opts.Replicas bodystream processes, all at once, and waits
// until each serves.
func (s *Stack) startReplicas(ctx context.Context, opts Options, path string) error {
	for i := range opts.Replicas {
		name := "bodystream"
		if opts.Replicas > 1 {
			name = fmt.Sprintf("bodystream-%d", i+1)
		}
		// No drain delay: Stop stops Envoy first, so nothing is left to move away, and
		// it allows five seconds for SIGTERM. BodystreamArgs may set one.
		args := append([]string{"-drain-delay", "0s"}, opts.BodystreamArgs...)
		r := &Replica{Name: name, path: path, env: opts.BodystreamEnv, args: args}
		if _, err := s.start(name, path, r.env, append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...)); err != nil {
			return err
		}
		s.Replicas = append(s.Replicas, r)
	}
	for _, r := range s.Replicas {
		addrs, err := s.waitReady(ctx, s.Process(r.Name))
		if err != nil {
			return err
		}
		r.Addr, r.MetricsAddr = addrs.Addr, addrs.Metrics
	}
	return nil
}

// Replica returns the replica of that name, or nil.
func (s *Stack) Replica(name string) *Replica {
	for _, r := range s.Replicas {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Restart starts the replica named name again, on the addresses it had, once its
// process has exited (a SIGKILL or a finished drain), and waits until it serves. Its
// log file starts anew; the old one is kept as NAME.log.N. Another process (the
// echo) restarts with its first arguments on its first addresses, its log going on.
func (s *Stack) Restart(ctx context.Context, name string) error {
	r, old := s.Replica(name), s.Process(name)
	if r == nil && old != nil {
		return s.restartProcess(ctx, name)
	}
	if r == nil || old == nil {
		return fmt.Errorf("restart: no replica named %q", name)
	}
	select {
	case <-old.done:
	default:
		return fmt.Errorf("restart %s: it is still running", name)
	}
	s.mu.Lock()
	i := slices.Index(s.procs, old)
	s.mu.Unlock()
	if err := os.Rename(old.LogPath, fmt.Sprintf("%s.%d", old.LogPath, i)); err != nil {
		return err
	}
	// The exited process's ready file would pass for the new one's.
	if err := os.Remove(s.readyPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	p, err := startProcess(s.Dir, name, r.path, r.env,
		append(append([]string{"-listen", r.Addr, "-admin-listen", r.MetricsAddr}, r.args...), "-ready-file", s.readyPath(name))...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[i] = p
	s.mu.Unlock()
	_, err = s.waitReady(ctx, p)
	return err
}

// start starts a process of the stack; every one but Envoy also gets a ready file.
func (s *Stack) start(name, path string, env, args []string) (*Process, error) {
	if name != "envoy" {
		args = append(args, "-ready-file", s.readyPath(name))
	}
	p, err := startProcess(s.Dir, name, path, env, args...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

func (s *Stack) readyPath(name string) string { return filepath.Join(s.Dir, name+".ready") }

func (s *Stack) waitReady(ctx context.Context, p *Process) (readyfile.Addrs, error) {
	return p.waitReadyFile(ctx, s.readyPath(p.Name))
}

// renderOnLoopback writes the Envoy config at src to dst with its listeners and admin
// on free loopback ports and the clusters named in clusters moved to their addresses.
// With more than one endpoint, the bodystream cluster gets those, after the fields of
// the YAML file bodystreamFields (if set).
func renderOnLoopback(src, dst string, clusters map[string]string, endpoints []string, bodystreamFields string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	cfg, err := ParseEnvoyConfig(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	addrs, err := cfg.Addresses()
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	for name := range addrs.Listeners {
		addrs.Listeners[name] = "127.0.0.1:0"
	}
	addrs.Admin, addrs.Clusters = "127.0.0.1:0", clusters
	if err := cfg.SetAddresses(addrs); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if bodystreamFields != "" {
		fields, err := os.ReadFile(bodystreamFields)
		if err != nil {
			return err
		}
		if err := cfg.SetClusterFields("bodystream", fields); err != nil {
			return fmt.Errorf("%s: %w", bodystreamFields, err)
		}
	}
	if len(endpoints) > 1 {
		if err := cfg.SetClusterEndpoints("bodystream", endpoints); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}
	out, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// waitEnvoy waits until Envoy's admin says it is ready, then learns the listener's
// port from it.
func (s *Stack) waitEnvoy(ctx context.Context, envoy *Process, adminPath string) error {
	ctx, stop := envoy.untilReady(ctx)
	defer stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.Admin == nil {
		// Envoy writes the admin's address once it listens, and answers /ready 200
		// once its listeners are up.
		if data, err := os.ReadFile(adminPath); err == nil && len(data) > 0 {
			url := "http://" + strings.TrimSpace(string(data))
			admin := NewAdmin(url)
			if admin.Ready(ctx) == nil {
				s.AdminURL, s.Admin = url, admin
				break
			}
			admin.Close()
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
	addr, err := s.Admin.ListenerAddr(ctx)
	if err != nil {
		return err
	}
	s.URL = "http://" + addr
	return nil
}

// Stop ends the processes, newest first (Envoy, then bodystream, then echo): SIGTERM,
// then SIGKILL after five seconds. It returns every unexpected exit.
func (s *Stack) Stop() error {
	if s.Admin != nil {
		s.Admin.Close()
	}
	var errs []error
	for _, p := range slices.Backward(s.Processes()) {
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Logs returns the last lines of every process's log, for failure messages.
func (s *Stack) Logs(lines int) string {
	var b strings.Builder
	for _, p := range s.Processes() {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", p.Name, p.LogPath, p.tail(lines))
	}
	return b.String()
}
