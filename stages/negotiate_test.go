package stages

import (
	"net/textproto"
	"testing"
)

func TestChooseEncoding(t *testing.T) {
	offered := []string{"zstd", "br", "gzip"}
	tests := []struct {
		name    string
		accept  []string // nil: no Accept-Encoding field
		offered []string // nil: offered
		want    string
	}{
		{"absent", nil, nil, ""},
		{"empty value", []string{""}, nil, ""},
		{"gzip", []string{"gzip"}, nil, "gzip"},
		{"route order breaks a tie", []string{"gzip, br, zstd"}, nil, "zstd"},
		{"client weights first", []string{"br;q=1, gzip;q=0.5"}, nil, "br"},
		{"client weights against order", []string{"zstd;q=0.2, gzip;q=0.9"}, nil, "gzip"},
		{"refused", []string{"gzip;q=0"}, nil, ""},
		{"refused but wildcard", []string{"gzip;q=0, *"}, []string{"gzip"}, ""},
		{"wildcard takes the route's first", []string{"*"}, nil, "zstd"},
		{"wildcard after explicit refusal", []string{"zstd;q=0, *"}, nil, "br"},
		{"identity only", []string{"identity"}, nil, ""},
		{"nothing acceptable", []string{"identity;q=0, *;q=0"}, nil, ""},
		{"identity preferred", []string{"gzip;q=0.5, identity"}, []string{"gzip"}, ""},
		{"identity tie goes to the coding", []string{"identity, gzip"}, []string{"gzip"}, "gzip"},
		{"unknown tokens", []string{"lz4, snappy;q=0.9"}, nil, ""},
		{"unknown and known", []string{"lz4, gzip;q=0.1"}, nil, "gzip"},
		{"odd spacing and case", []string{"  GZip ;  Q = 0.8 ,BR;q=0.7"}, nil, "gzip"},
		{"several fields", []string{"br;q=0.1", "gzip"}, nil, "gzip"},
		{"bad weight ignored", []string{"gzip;q=abc, br;q=0.3"}, nil, "br"},
		{"weight above 1 ignored", []string{"gzip;q=2"}, nil, ""},
		{"negative weight ignored", []string{"gzip;q=-1"}, nil, ""},
		{"other parameters", []string{"gzip;level=9;q=0.5"}, []string{"gzip"}, "gzip"},
		{"empty elements", []string{",, ,gzip,"}, nil, "gzip"},
		{"not offered", []string{"br"}, []string{"gzip"}, ""},
		{"three decimals", []string{"gzip;q=0.001, br;q=0.0005"}, nil, "gzip"},
		{"x-gzip is gzip", []string{"x-gzip"}, nil, "gzip"},
		{"repeated takes the highest", []string{"gzip;q=0, gzip;q=0.5"}, []string{"gzip"}, "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := textproto.MIMEHeader{}
			if tt.accept != nil {
				h["Accept-Encoding"] = tt.accept
			}
			o := tt.offered
			if o == nil {
				o = offered
			}
			if got := parseAcceptEncoding(h).choose(o); got != tt.want {
				t.Fatalf("choose(%q) among %q = %q, want %q", tt.accept, o, got, tt.want)
			}
		})
	}
}

func FuzzChooseEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "br;q=1, gzip;q=0.5", "*;q=0", "identity;q=0, *;q=0", " GZIP ; q = 0.1 "} {
		f.Add(s)
	}
	offered := []string{"zstd", "br", "gzip"}
	f.Fuzz(func(t *testing.T, accept string) {
		a := parseAcceptEncoding(textproto.MIMEHeader{"Accept-Encoding": {accept}})
		got := a.choose(offered)
		if got == "" {
			return
		}
		// Never a coding the client did not accept.
		if a.quality(got) <= 0 {
			t.Fatalf("chose %q for %q, which gives it weight %v", got, accept, a.quality(got))
		}
	})
}
