package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Every upload is a connection of its own from the bench to Envoy (both protocols),
// and Envoy, bodystream and the echo inherit the bench's limits. What one upload
// costs at most, in open files of one process: the client's socket, Envoy's
// downstream socket, its share of the upstream connections, slack for logs and pipes.
const (
	filesPerUpload = 3
	filesSlack     = 256
)

// raiseFileLimit lifts the soft limit on open files to the hard one, so that the
// stack the bench starts (its children inherit it) can hold concurrency uploads,
// and refuses a load the hard limit or the ephemeral ports cannot hold.
func raiseFileLimit(concurrency int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open files limit: %w", err)
	}
	need := uint64(filesPerUpload*concurrency + filesSlack)
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise the open files limit to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < need {
		return fmt.Errorf("%d concurrent uploads need about %d open files per process; the hard limit is %d (ulimit -Hn)", concurrency, need, lim.Max)
	}
	if low, high, err := localPorts(); err == nil && high-low+1 < 2*concurrency {
		return fmt.Errorf("%d concurrent uploads need %d local ports; net.ipv4.ip_local_port_range gives %d", concurrency, 2*concurrency, high-low+1)
	}
	return nil
}

// localPorts reads the ephemeral port range.
func localPorts() (low, high int, err error) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range: %q", data)
	}
	if low, err = strconv.Atoi(fields[0]); err == nil {
		high, err = strconv.Atoi(fields[1])
	}
	return low, high, err
}
