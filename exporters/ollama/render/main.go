// Renders an Ollama chat template with Go's own text/template, the engine Ollama uses.
// Input on stdin: {"template": "...", "values": {"System": "...", "Messages": [{"Role": "...", "Content": "..."}]}}
// Output on stdout: the rendered prompt. Standard library only: `go run main.go < input.json`.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
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
	tmpl, err := template.New("ollama").Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(3)
	}
	if err := tmpl.Execute(os.Stdout, in.Values); err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		os.Exit(4)
	}
}
