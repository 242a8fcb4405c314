// Command bodystream is an Envoy ext_proc server that streams HTTP bodies through
// configurable transform pipelines with bounded memory.
package main

import "github.com/bodystream/bodystream/app"

func main() { app.Main() }
