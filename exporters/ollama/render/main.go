// Renders an Ollama chat template with Go's own text/template, the engine Ollama uses, on values shaped like
// the ones Ollama passes (its template.Values and api types: messages with tool calls, tool names and thinking,
// the request's tools, the think flags) and with its template functions currentDate and json.
// Input on stdin: {"template": "...", "values": {"System": "...", "Messages": [{"Role": "...", "Content": "...",
// "ToolCalls": [{"Function": {"Name": "...", "Arguments": {...}}}]}], "Tools": [...], "Think": false, ...}}
// Output on stdout: the rendered prompt. Standard library only: `go run main.go < input.json`.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
	"time"
)

// Arguments keeps the order the JSON gave (Ollama's ordered map); printed, it is compact JSON as Ollama's String()
// writes it: the values decoded and marshalled again (strings unescaped, then <, > and & escaped).
type Arguments struct{ json.RawMessage }

func (a Arguments) MarshalJSON() ([]byte, error) {
	if len(a.RawMessage) == 0 {
		return []byte("{}"), nil
	}
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(a.RawMessage))
	dec.UseNumber()
	if err := reencode(dec, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
func (a *Arguments) UnmarshalJSON(b []byte) error {
	a.RawMessage = append([]byte(nil), b...)
	return nil
}
func (a Arguments) String() string { return marshal(a) }

// reencode copies one JSON value from dec to out, objects in their key order.
func reencode(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' || t == '[' {
			out.WriteByte(byte(t))
			for n := 0; dec.More(); n++ {
				if n > 0 {
					out.WriteByte(',')
				}
				if t == '{' {
					key, _ := dec.Token()
					out.WriteString(marshal(key) + ":")
				}
				if err := reencode(dec, out); err != nil {
					return err
				}
			}
			end, _ := dec.Token()
			out.WriteByte(byte(end.(json.Delim)))
		}
	default:
		out.WriteString(marshal(t))
	}
	return nil
}

type ToolCallFunction struct {
	Index     int       `json:"index"`
	Name      string    `json:"name"`
	Arguments Arguments `json:"arguments"`
}

type ToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolName   string     `json:"tool_name,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// UnmarshalJSON reads the input by Go field names (ToolCalls, ToolName, ToolCallID), as templates name them.
func (m *Message) UnmarshalJSON(b []byte) error {
	var f struct {
		Role, Content, Thinking string
		ToolCalls               []ToolCall
		ToolName, ToolCallID    string
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*m = Message{Role: f.Role, Content: f.Content, Thinking: f.Thinking, ToolCalls: f.ToolCalls, ToolName: f.ToolName,
		ToolCallID: f.ToolCallID}
	return nil
}

type Parameters struct {
	Type       string          `json:"type"`
	Defs       any             `json:"$defs,omitempty"`
	Items      any             `json:"items,omitempty"`
	Required   []string        `json:"required,omitempty"`
	Properties json.RawMessage `json:"properties"`
}

type ToolFunction struct {
	Name        string     `json:"name"`
	Description string     `json:"description,omitempty"`
	Parameters  Parameters `json:"parameters"`
}

func (f ToolFunction) String() string { return marshal(f) }

type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

func (t Tool) String() string { return marshal(t) }

type Values struct {
	System     string
	Messages   []Message
	Tools      []Tool
	Prompt     string
	Response   string
	Think      bool
	ThinkLevel string
	IsThinkSet bool
}

func marshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func main() {
	var in struct {
		Template string `json:"template"`
		Values   Values `json:"values"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	// currentDate and json as Ollama's template package defines them.
	funcs := template.FuncMap{
		"currentDate": func() string { return time.Now().Format("2006-01-02") },
		"json":        func(v any) string { return marshal(v) },
	}
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
