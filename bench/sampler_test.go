package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestReadProcOfThisProcess(t *testing.T) {
	// Some CPU and memory to see.
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	p, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS < 16<<20 || p.RSS > 4<<30 {
		t.Errorf("RSS %d: not between the 16 MiB this test touched and 4 GiB", p.RSS)
	}
	if p.Anon <= 0 || p.Anon > p.RSS {
		t.Errorf("RssAnon %d, RSS %d", p.Anon, p.RSS)
	}
	if p.HWM < p.RSS {
		t.Errorf("VmHWM %d below VmRSS %d", p.HWM, p.RSS)
	}
	if p.CPU < 0.04 {
		t.Errorf("CPU %.2fs after 50ms of spinning", p.CPU)
	}
	_ = data[len(data)-1]
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis, as a process may choose.
	stat := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 0 0 20 0 8 0 1000 100000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3.8; got != want {
		t.Errorf("CPU %.2f, want %.2f (utime 250 + stime 130 ticks)", got, want)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): want an error", bad)
		}
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tenvoy\nVmHWM:\t   90000 kB\nVmRSS:\t   84732 kB\nRssAnon:\t   31688 kB\nRssFile:\t   53044 kB\n"
	for name, want := range map[string]int64{"VmRSS": 84732 << 10, "RssAnon": 31688 << 10, "VmHWM": 90000 << 10} {
		got, err := parseStatusKB([]byte(status), name)
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Error("a missing line: want an error")
	}
	if _, err := parseStatusKB([]byte("VmRSS:\t12 MB\n"), "VmRSS"); err == nil {
		t.Error("a unit other than kB: want an error")
	}
}

func TestParseMachineBusy(t *testing.T) {
	got, err := parseMachineBusy([]byte("cpu  100 5 50 9000 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1.70; got != want { // (100+5+50+3+2+10) ticks
		t.Errorf("busy %.2f, want %.2f", got, want)
	}
	if _, err := machineBusy(); err != nil {
		t.Errorf("this machine's /proc/stat: %v", err)
	}
}

func TestSamplerSamplesThisProcess(t *testing.T) {
	s := newSampler(10*time.Millisecond, []string{"me"}, map[string]int{"me": os.Getpid()}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	s.run(ctx)
	series, envoy, errs := s.result()
	if len(errs) > 0 || len(envoy) > 0 {
		t.Errorf("errors %v, envoy points %v", errs, envoy)
	}
	if len(series) != 1 || len(series[0].Points) < 3 {
		t.Fatalf("series %+v: want some points of one process", series)
	}
	for i, p := range series[0].Points {
		if p.RSS <= 0 || i > 0 && p.T <= series[0].Points[i-1].T {
			t.Errorf("point %d: %+v", i, p)
		}
	}
}
