// Command bodystream-redact is bodystream with one more stage kind, "redact", built
// in a module of its own: no fork, just an import for the kind's init function.
package main

import (
	"github.com/bodystream/bodystream/app"

	_ "example.com/customstage/redact" // registers the "redact" stage kind
)

func main() { app.Main() }
