// Renders an Ollama chat template with Go's own text/template, the engine Ollama uses.
// Input on stdin: {"template": "...", "values": {"System": "...", "Messages": [{"Role": "...", "Content": "..."}]}}
// Output on stdout: the rendered prompt. Standard library only: `go run main.go < input.json`.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
	"time"
)

func main() {
	var in struct {
		Template string         `json:"template"`
		Values   map[string]any `json:"values"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	// currentDate as Ollama's template package defines it (its only function a derived template uses).
	funcs := template.FuncMap{"currentDate": func() string { return time.Now().Format("2006-01-02") }}
	tmpl, err := template.New("ollama").Funcs(funcs).Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(3)
	}
	if err := tmpl.Execute(os.Stdout, in.Values); err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		os.Exit(4)
	}
}
