package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvoyConfig is an Envoy bootstrap file parsed for editing. The edits go through the
// YAML tree, by the admin, a listener's name or a cluster's name, so that they cannot
// touch a port that merely looks the same elsewhere in the file; comments, anchors and
// flow styles survive, blank lines do not.
type EnvoyConfig struct {
	doc *yaml.Node
}

// Addresses are the sockets of an Envoy configuration, as host:port.
type Addresses struct {
	Admin     string            // admin.address
	Listeners map[string]string // listener name → its address
	Clusters  map[string]string // cluster name → the address of its endpoints
}

// ParseEnvoyConfig parses an Envoy bootstrap file in YAML.
func ParseEnvoyConfig(src []byte) (*EnvoyConfig, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("envoy config: not a YAML mapping")
	}
	return &EnvoyConfig{doc: &doc}, nil
}

// Addresses reads the admin's, every listener's and every cluster's address. A
// cluster whose endpoints differ in address is an error: Addresses and SetAddresses
// treat a cluster as one service.
func (c *EnvoyConfig) Addresses() (Addresses, error) {
	a := Addresses{Listeners: map[string]string{}, Clusters: map[string]string{}}
	if admin := c.adminSocket(); admin != nil {
		addr, err := socketAddress(admin)
		if err != nil {
			return Addresses{}, fmt.Errorf("admin: %w", err)
		}
		a.Admin = addr
	}
	for name, sockets := range c.listenerSockets() {
		if err := collect(a.Listeners, "listener", name, sockets); err != nil {
			return Addresses{}, err
		}
	}
	for name, sockets := range c.clusterSockets() {
		if err := collect(a.Clusters, "cluster", name, sockets); err != nil {
			return Addresses{}, err
		}
	}
	return a, nil
}

// collect puts the one address of sockets into m[name].
func collect(m map[string]string, kind, name string, sockets []*yaml.Node) error {
	for _, s := range sockets {
		addr, err := socketAddress(s)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, name, err)
		}
		if prev, ok := m[name]; ok && prev != addr {
			return fmt.Errorf("%s %s: addresses %s and %s", kind, name, prev, addr)
		}
		m[name] = addr
	}
	return nil
}

// SetAddresses moves the admin (unless a.Admin is empty) and the listeners and
// clusters a names to a's addresses, and leaves the rest alone. A name the file lacks
// is an error, so that a renamed listener or cluster cannot silently keep its old
// address.
func (c *EnvoyConfig) SetAddresses(a Addresses) error {
	if a.Admin != "" {
		admin := c.adminSocket()
		if admin == nil {
			return errors.New("envoy config: no admin.address.socket_address")
		}
		if err := setSocketAddress(admin, a.Admin); err != nil {
			return fmt.Errorf("envoy config: admin: %w", err)
		}
	}
	if err := setAll("listener", c.listenerSockets(), a.Listeners); err != nil {
		return err
	}
	return setAll("cluster", c.clusterSockets(), a.Clusters)
}

func setAll(kind string, sockets map[string][]*yaml.Node, addrs map[string]string) error {
	for name, addr := range addrs {
		if len(sockets[name]) == 0 {
			return fmt.Errorf("envoy config: no %s named %q with a socket_address", kind, name)
		}
		for _, s := range sockets[name] {
			if err := setSocketAddress(s, addr); err != nil {
				return fmt.Errorf("envoy config: %s %s: %w", kind, name, err)
			}
		}
	}
	return nil
}

// SetClusterFields sets the fields of the YAML mapping fields on the static cluster
// named name, replacing those it has already and adding the others. A field holding
// an anchor is not replaced: its aliases elsewhere would lose their value.
func (c *EnvoyConfig) SetClusterFields(name string, fields []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(fields, &doc); err != nil {
		return fmt.Errorf("envoy config: fields for cluster %s: %w", name, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("envoy config: fields for cluster %s: not a YAML mapping", name)
	}
	for _, cl := range items(lookup(c.root(), "static_resources", "clusters")) {
		if scalar(lookup(cl, "name")) != name || cl.Kind != yaml.MappingNode {
			continue
		}
		add := doc.Content[0].Content
		for i := 0; i+1 < len(add); i += 2 {
			if old := lookup(cl, add[i].Value); old != nil && old.Anchor != "" {
				return fmt.Errorf("envoy config: cluster %s: %s holds the anchor &%s", name, add[i].Value, old.Anchor)
			}
		}
		for i := 0; i+1 < len(add); i += 2 {
			setField(cl, add[i], add[i+1])
		}
		return nil
	}
	return fmt.Errorf("envoy config: no cluster named %q", name)
}

// SetClusterEndpoints gives the static cluster named name one endpoint per address,
// each a copy of its first endpoint (health check and metadata settings included) at
// that address: several replicas of one service on one machine.
func (c *EnvoyConfig) SetClusterEndpoints(name string, addrs []string) error {
	for _, cl := range items(lookup(c.root(), "static_resources", "clusters")) {
		if scalar(lookup(cl, "name")) != name {
			continue
		}
		groups := items(lookup(cl, "load_assignment", "endpoints"))
		if len(groups) != 1 || len(items(lookup(groups[0], "lb_endpoints"))) == 0 {
			return fmt.Errorf("envoy config: cluster %s: want one locality with endpoints", name)
		}
		list := lookup(groups[0], "lb_endpoints")
		var eps []*yaml.Node
		for _, addr := range addrs {
			ep := deepCopy(list.Content[0])
			s := lookup(ep, "endpoint", "address", "socket_address")
			if s == nil {
				return fmt.Errorf("envoy config: cluster %s: endpoint without a socket_address", name)
			}
			if err := setSocketAddress(s, addr); err != nil {
				return fmt.Errorf("envoy config: cluster %s: %w", name, err)
			}
			eps = append(eps, ep)
		}
		list.Content = eps
		return nil
	}
	return fmt.Errorf("envoy config: no cluster named %q", name)
}

// deepCopy copies a YAML tree, so that editing the copy leaves the original alone.
func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, child := range n.Content {
		c.Content[i] = deepCopy(child)
	}
	return &c
}

// setField sets key to value in the mapping m.
func setField(m, key, value *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key.Value {
			m.Content[i+1] = value
			return
		}
	}
	m.Content = append(m.Content, key, value)
}

// AddNotice puts text, one comment line per line, above the file's leading comment.
func (c *EnvoyConfig) AddNotice(text string) {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimRight(text, "\n")) {
		b.WriteString(strings.TrimRight("# "+line, " \n") + "\n")
	}
	// yaml.v3 keeps a leading comment on the document when a blank line follows it,
	// else on the first key.
	holder := c.doc
	if holder.HeadComment == "" {
		holder = c.root().Content[0]
	}
	if holder.HeadComment != "" {
		b.WriteString("#\n" + holder.HeadComment)
	}
	holder.HeadComment = strings.TrimRight(b.String(), "\n")
}

// Marshal renders the configuration, indented as Envoy's examples are.
func (c *EnvoyConfig) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(c.doc); err != nil {
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	return b.Bytes(), nil
}

func (c *EnvoyConfig) root() *yaml.Node { return c.doc.Content[0] }

// adminSocket returns admin.address.socket_address, or nil.
func (c *EnvoyConfig) adminSocket() *yaml.Node {
	return lookup(c.root(), "admin", "address", "socket_address")
}

// listenerSockets returns each static listener's socket_address by listener name.
func (c *EnvoyConfig) listenerSockets() map[string][]*yaml.Node {
	sockets := map[string][]*yaml.Node{}
	for _, l := range items(lookup(c.root(), "static_resources", "listeners")) {
		if s := lookup(l, "address", "socket_address"); s != nil {
			name := scalar(lookup(l, "name"))
			sockets[name] = append(sockets[name], s)
		}
	}
	return sockets
}

// clusterSockets returns the socket_address of every endpoint of each static
// cluster, by cluster name.
func (c *EnvoyConfig) clusterSockets() map[string][]*yaml.Node {
	sockets := map[string][]*yaml.Node{}
	for _, cl := range items(lookup(c.root(), "static_resources", "clusters")) {
		name := scalar(lookup(cl, "name"))
		for _, group := range items(lookup(cl, "load_assignment", "endpoints")) {
			for _, ep := range items(lookup(group, "lb_endpoints")) {
				if s := lookup(ep, "endpoint", "address", "socket_address"); s != nil {
					sockets[name] = append(sockets[name], s)
				}
			}
		}
	}
	return sockets
}

// lookup follows keys through nested mappings, and returns nil where one is missing.
// An alias ends the walk too: editing through it would edit every place the anchor
// is used.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, key := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// items returns the elements of a sequence, none for anything else.
func items(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// socketAddress reads {address, port_value} as host:port.
func socketAddress(s *yaml.Node) (string, error) {
	host, port := lookup(s, "address"), lookup(s, "port_value")
	if scalar(host) == "" || scalar(port) == "" {
		return "", errors.New("socket_address without address and port_value")
	}
	return net.JoinHostPort(host.Value, port.Value), nil
}

// setSocketAddress writes host:port into {address, port_value}.
func setSocketAddress(s *yaml.Node, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port of %s: %w", addr, err)
	}
	hostNode, portNode := lookup(s, "address"), lookup(s, "port_value")
	if hostNode == nil || portNode == nil || hostNode.Kind != yaml.ScalarNode || portNode.Kind != yaml.ScalarNode {
		return errors.New("socket_address without address and port_value")
	}
	hostNode.SetString(host)
	portNode.Value, portNode.Tag, portNode.Style = port, "!!int", 0
	return nil
}
