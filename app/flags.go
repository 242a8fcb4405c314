package app

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bodystream/bodystream/config"
)

// options are the command line. Flags that name a configuration field override it
// when given, whatever their value; those not given leave the file's (or the
// built-in) value alone.
type options struct {
	flags       *flag.FlagSet
	configPath  string
	checkPath   string
	readyFile   string
	version     bool
	listen      string
	adminListen string
	pprof       bool
	tlsCert     string
	tlsKey      string
	tlsClientCA string
	drainDelay  time.Duration
	drainTO     time.Duration
	logFormat   string
	logLevel    string
}

func newOptions(stderr io.Writer) *options {
	o := &options{flags: flag.NewFlagSet("bodystream", flag.ContinueOnError)}
	f := o.flags
	f.SetOutput(stderr)
	f.Usage = func() {
		fmt.Fprintf(f.Output(), `Usage:
  bodystream [flags]                serve (SIGTERM or SIGINT drains, then stops)
  bodystream -check-config FILE     check FILE (and the flags) as start-up would, then exit
  bodystream healthcheck [flags]    ask a running bodystream's gRPC health service; exit 0 if SERVING
  bodystream -version

Flags naming a configuration field override the file's value when given.

`)
		f.PrintDefaults()
	}
	f.StringVar(&o.configPath, "config", "", "YAML configuration `file` (default: the built-in configuration)")
	f.StringVar(&o.checkPath, "check-config", "", "check the configuration `file` as start-up would (addresses, certificates, directories) and exit")
	f.StringVar(&o.readyFile, "ready-file", "", "once serving, write the gRPC and admin addresses to this `file` (for test harnesses)")
	f.BoolVar(&o.version, "version", false, "print the version, commit and Go version, and exit")
	f.StringVar(&o.listen, "listen", "", "gRPC listen `address`: host:port or unix:///path/to.sock (field listen)")
	f.StringVar(&o.adminListen, "admin-listen", "", "admin `address` for /metrics, /healthz, /readyz; \"off\" disables (field admin_listen)")
	f.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof/ on the admin address (field pprof)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `file` of the gRPC listener; turns TLS on (field tls.cert)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` of -tls-cert (field tls.key)")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM CA `file`: require client certificates it signed, i.e. mTLS (field tls.client_ca)")
	f.DurationVar(&o.drainDelay, "drain-delay", 0, "after SIGTERM, keep accepting new streams this long while reporting not ready (field drain_delay)")
	f.DurationVar(&o.drainTO, "drain-timeout", 0, "then let streams in flight finish for this long before cutting them (field drain_timeout)")
	f.StringVar(&o.logFormat, "log-format", "", "log format: text or json (field log_format)")
	f.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (field log_level)")
	return o
}

// apply writes the flags that were given over cfg.
func (o *options) apply(cfg *config.Config) {
	o.flags.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = o.listen
		case "admin-listen":
			cfg.AdminListen = o.adminListen
			if o.adminListen == "off" {
				cfg.AdminListen = ""
			}
		case "pprof":
			cfg.PProf = o.pprof
		case "tls-cert":
			cfg.TLS.Cert = o.tlsCert
		case "tls-key":
			cfg.TLS.Key = o.tlsKey
		case "tls-client-ca":
			cfg.TLS.ClientCA = o.tlsClientCA
		case "drain-delay":
			cfg.DrainDelay = config.Duration(o.drainDelay)
		case "drain-timeout":
			cfg.DrainTimeout = config.Duration(o.drainTO)
		case "log-format":
			cfg.LogFormat = o.logFormat
		case "log-level":
			cfg.LogLevel = o.logLevel
		}
	})
}
