package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Windows are Envoy settings a run may change in each scenario's envoy.yaml, to
// measure candidates for the shipped ones (bench/RESULTS.md, "Envoy's windows").
// Zero leaves a setting as the file has it.
type Windows struct {
	// ExtProcStream and ExtProcConn are the HTTP/2 stream and connection windows of
	// the ext_proc cluster (bodystream or seed): how much Envoy lets the ext_proc
	// server send it ahead of what Envoy consumed.
	ExtProcStream int `json:"ext_proc_stream_window,omitempty"`
	ExtProcConn   int `json:"ext_proc_conn_window,omitempty"`
	// BufferLimit is per_connection_buffer_limit_bytes of the listener and of every
	// cluster: what Envoy buffers per connection before it stops reading.
	BufferLimit int `json:"buffer_limit,omitempty"`
	// ExtProcBuffer is per_connection_buffer_limit_bytes of the ext_proc cluster
	// alone, applied after BufferLimit: how much body Envoy queues for a side stream
	// whose window is spent before it stops reading the client.
	ExtProcBuffer int `json:"ext_proc_buffer_limit,omitempty"`
}

func (w Windows) set() bool { return w != Windows{} }

// String writes the settings the way -windows reads them.
func (w Windows) String() string {
	return fmt.Sprintf("ext-proc-stream=%d,ext-proc-conn=%d,buffer=%d,ext-proc-buffer=%d", w.ExtProcStream, w.ExtProcConn, w.BufferLimit, w.ExtProcBuffer)
}

// parseWindows reads "ext-proc-stream=65536,ext-proc-conn=1048576,buffer=32768,ext-proc-buffer=16384".
func parseWindows(text string) (Windows, error) {
	var w Windows
	if text == "" {
		return w, nil
	}
	fields := map[string]*int{"ext-proc-stream": &w.ExtProcStream, "ext-proc-conn": &w.ExtProcConn, "buffer": &w.BufferLimit, "ext-proc-buffer": &w.ExtProcBuffer}
	for part := range strings.SplitSeq(text, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		field, ok := fields[name]
		if !ok {
			return w, fmt.Errorf("%q: want ext-proc-stream, ext-proc-conn, buffer or ext-proc-buffer", name)
		}
		sizes, err := parseSizes(value)
		if err != nil || len(sizes) != 1 {
			return w, fmt.Errorf("%s: %q is not a size", name, value)
		}
		n := sizes[0]
		// HTTP/2 windows run from 65535 to 2^31-1; Envoy refuses a buffer limit of 0.
		window := name == "ext-proc-stream" || name == "ext-proc-conn"
		if n < 1024 || n > 1<<31-1 || (window && n < 65535) {
			return w, fmt.Errorf("%s: %d out of range", name, n)
		}
		*field = int(n)
	}
	return w, nil
}

// applyWindows writes src's Envoy configuration to dst with w's settings.
func applyWindows(src, dst string, w Windows) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if len(doc.Content) != 1 {
		return fmt.Errorf("%s: not a YAML document", src)
	}
	root := doc.Content[0]
	resources := mapValue(root, "static_resources")
	changed := 0
	listeners, clusters := mapValue(resources, "listeners"), mapValue(resources, "clusters")
	if listeners == nil || clusters == nil {
		return fmt.Errorf("%s: no static_resources listeners and clusters", src)
	}
	if w.BufferLimit > 0 {
		for _, l := range listeners.Content {
			setInt(l, "per_connection_buffer_limit_bytes", w.BufferLimit)
			changed++
		}
	}
	for _, c := range clusters.Content {
		if w.BufferLimit > 0 {
			setInt(c, "per_connection_buffer_limit_bytes", w.BufferLimit)
		}
		name := scalarValue(mapValue(c, "name"))
		if name != "bodystream" && name != "seed" {
			continue
		}
		if w.ExtProcBuffer > 0 {
			setInt(c, "per_connection_buffer_limit_bytes", w.ExtProcBuffer)
			changed++
		}
		h2 := mapValue(mapValue(mapValue(mapValue(c, "typed_extension_protocol_options"),
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions"), "explicit_http_config"), "http2_protocol_options")
		if h2 == nil {
			if w.ExtProcStream > 0 || w.ExtProcConn > 0 {
				return fmt.Errorf("%s: cluster %s has no explicit_http_config.http2_protocol_options to set windows in", src, name)
			}
			continue
		}
		if w.ExtProcStream > 0 {
			setInt(h2, "initial_stream_window_size", w.ExtProcStream)
			changed++
		}
		if w.ExtProcConn > 0 {
			setInt(h2, "initial_connection_window_size", w.ExtProcConn)
			changed++
		}
	}
	if changed == 0 {
		return fmt.Errorf("%s: -windows %s changed nothing", src, w)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// mapValue returns the value of key in mapping n, nil if n is no mapping or lacks it.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalarValue(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

// setInt sets key of mapping n to v, adding the key if absent.
func setInt(n *yaml.Node, key string, v int) {
	value := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i+1] = value
			return
		}
	}
	n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, value)
}
