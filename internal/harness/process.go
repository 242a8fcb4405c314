package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

// Process is one started program of a stack.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	// Addrs are what the process announced in its ready file (empty for Envoy).
	Addrs readyfile.Addrs
	done  chan struct{}
	err   error
	// path, env and args are how it was started, for Stack.Restart.
	path      string
	env, args []string
	killed    bool // by Stack.Kill: its exit is expected
}

// Pid is the process id, for sampling /proc.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// startTimeout bounds how long a process may take to say it is ready.
const startTimeout = 30 * time.Second

// startProcess starts path with args, its output going to dir/name.log.
func startProcess(dir, name, path string, env []string, args ...string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	// Appended to: a restarted process keeps its first life's log.
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
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
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{}), path: path, env: env, args: args}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// untilReady returns a context that ends when ctx does, when the process exits or
// when startTimeout has passed, with a cause that says which.
func (p *Process) untilReady(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	ctx, stop := context.WithTimeoutCause(ctx, startTimeout, fmt.Errorf("%s not ready after %s", p.Name, startTimeout))
	go func() {
		select {
		case <-p.done:
			cancel(fmt.Errorf("%s exited before it was ready: %v", p.Name, p.err))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// waitReadyFile waits for the process's ready file.
func (p *Process) waitReadyFile(ctx context.Context, path string) (readyfile.Addrs, error) {
	ctx, stop := p.untilReady(ctx)
	defer stop()
	addrs, err := readyfile.Wait(ctx, path)
	p.Addrs = addrs
	return addrs, err
}

// stop sends SIGTERM, then kills the process group after five seconds. It returns
// an unexpected exit, or a process that had to be killed.
func (p *Process) stop() error {
	select {
	case <-p.done:
		if p.err != nil && !p.killed {
			return fmt.Errorf("%s had exited: %w", p.Name, p.err)
		}
		return nil
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop on SIGTERM", p.Name)
	}
}

// tail returns the last lines of the process's log.
func (p *Process) tail(lines int) string {
	data, _ := os.ReadFile(p.LogPath)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// Done is closed when the process has exited; Err then says how.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for status 0); valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}
