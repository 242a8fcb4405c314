package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/bodystream/bodystream/config"
)

// listen opens the gRPC listener: TCP for host:port, a Unix socket with the given
// file mode for unix:///path. A socket file left by a bodystream that died is
// removed first; one that a live process still answers on is not.
func listen(addr string, mode os.FileMode) (net.Listener, error) {
	network, address := config.SplitListenAddress(addr)
	if network == "tcp" {
		return net.Listen("tcp", address)
	}
	if err := removeStaleSocket(address); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode; chmod before anyone is told it
	// serves (the ready file, the log line).
	if err := os.Chmod(address, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket_mode: %w", err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nothing listens on any more.
func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s: another process is serving on this socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// listenerAddr is the address a client dials: host:port, or unix:///path.
func listenerAddr(l net.Listener) string {
	if l.Addr().Network() == "unix" {
		return "unix://" + l.Addr().String()
	}
	return l.Addr().String()
}

// serverCredentials loads the gRPC listener's TLS certificate and, for mTLS, the CA
// that clients' certificates must chain to; nil without TLS.
func serverCredentials(t config.TLS) (credentials.TransportCredentials, error) {
	if !t.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("tls.cert, tls.key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pool, err := loadCertPool(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}

// loadCertPool reads a PEM bundle of CA certificates.
func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// checkEnvironment checks, for -check-config, what start-up needs of the machine
// beyond the configuration itself (the file stages' directories are checked when
// the pipelines are built): the certificate files, and that a Unix socket's
// directory exists. It does not bind the addresses: the service being checked may
// be running on them.
func checkEnvironment(cfg *config.Config) error {
	var errs []error
	if _, err := serverCredentials(cfg.TLS); err != nil {
		errs = append(errs, err)
	}
	if network, path := config.SplitListenAddress(cfg.Listen); network == "unix" {
		dir := filepath.Dir(path)
		if info, err := os.Stat(dir); err != nil {
			errs = append(errs, fmt.Errorf("listen: socket directory: %w", err))
		} else if !info.IsDir() {
			errs = append(errs, fmt.Errorf("listen: %s is not a directory", dir))
		} else if info, err := os.Lstat(path); err == nil && info.Mode().Type() != fs.ModeSocket {
			errs = append(errs, fmt.Errorf("listen: %s exists and is not a socket", path))
		}
	}
	return errors.Join(errs...)
}
