package server

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/stage"
)

// TestWithRouteEdits: a route's edits join what the pipeline changes, in a stable
// order, with append marked so that Envoy keeps the existing values.
func TestWithRouteEdits(t *testing.T) {
	gzip := "gzip"
	edits := config.HeaderEdits{
		Set:    map[string]string{"x-b": "2", "x-a": "1"},
		Append: map[string]string{"x-tag": "bodystream"},
		Remove: []string{"x-internal"},
	}
	type header struct {
		key, value string
		append     bool
	}
	cases := []struct {
		name       string
		base       *extprocv3.HeaderMutation
		edits      config.HeaderEdits
		wantSet    []header
		wantRemove []string
	}{
		{"no edits keep nil", nil, config.HeaderEdits{}, nil, nil},
		{"no edits keep the pipeline's", headerMutation(stage.HeaderEdit{ContentEncoding: &gzip}, nil), config.HeaderEdits{},
			[]header{{"content-encoding", "gzip", false}}, nil},
		{"edits alone", nil, edits,
			[]header{{"x-a", "1", false}, {"x-b", "2", false}, {"x-tag", "bodystream", true}}, []string{"x-internal"}},
		{"edits after the pipeline's", headerMutation(stage.HeaderEdit{ContentEncoding: &gzip, ChangesLength: true}, nil), edits,
			[]header{{"content-encoding", "gzip", false}, {"x-a", "1", false}, {"x-b", "2", false}, {"x-tag", "bodystream", true}},
			[]string{"content-length", "x-internal"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := withRouteEdits(tc.base, tc.edits)
			if tc.wantSet == nil && tc.wantRemove == nil {
				if m != nil {
					t.Fatalf("mutation %v, want none", m)
				}
				return
			}
			var got []header
			for _, h := range m.GetSetHeaders() {
				//lint:ignore SA1019 ext_proc reads append, not append_action (Envoy 1.40)
				got = append(got, header{h.GetHeader().GetKey(), string(h.GetHeader().GetRawValue()), h.GetAppend().GetValue()})
			}
			if len(got) != len(tc.wantSet) {
				t.Fatalf("set %v, want %v", got, tc.wantSet)
			}
			for i := range got {
				if got[i] != tc.wantSet[i] {
					t.Errorf("set[%d] = %v, want %v", i, got[i], tc.wantSet[i])
				}
			}
			if len(m.GetRemoveHeaders()) != len(tc.wantRemove) {
				t.Fatalf("remove %v, want %v", m.GetRemoveHeaders(), tc.wantRemove)
			}
			for i, k := range m.GetRemoveHeaders() {
				if k != tc.wantRemove[i] {
					t.Errorf("remove[%d] = %q, want %q", i, k, tc.wantRemove[i])
				}
			}
		})
	}
}
