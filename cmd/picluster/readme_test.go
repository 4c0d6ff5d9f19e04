package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/picluster/picluster/collector"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and README.md's summary schema from the code")

const readmePath = "../../README.md"

func readme(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// helpOf returns the -h output of cmd, through run, as a user sees it.
func helpOf(t testing.TB, cmd string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{cmd, "-h"}, func(string) string { return "" }, &out, &errb); err != nil || errb.Len() > 0 {
		t.Fatalf("%s -h: %v, stderr %q", cmd, err, errb.String())
	}
	return out.String()
}

// flagsOf returns the flags that cmd's -h lists.
func flagsOf(t testing.TB, cmd string) []string {
	t.Helper()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(helpOf(t, cmd), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// codeBlocks returns the README's fenced blocks whose info string is one of langs.
func codeBlocks(md string, langs ...string) []string {
	var blocks []string
	for _, m := range regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```").FindAllStringSubmatch(md, -1) {
		if slices.Contains(langs, m[1]) {
			blocks = append(blocks, m[2])
		}
	}
	return blocks
}

// invocations finds "picluster COMMAND --flag …" in text and returns, per
// command, the flags used. A line ending in \ continues on the next.
func invocations(text string) map[string][]string {
	text = strings.ReplaceAll(text, "\\\n", " ")
	uses := make(map[string][]string)
	re := regexp.MustCompile(`\bpicluster(?:_\S+)?\s+([a-z]+)\b([^\n|&;#` + "`" + `]*)`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(commands, m[1]) {
			continue
		}
		for _, f := range regexp.MustCompile(`(?:^|\s|\[)--([a-z0-9-]+)`).FindAllStringSubmatch(m[2], -1) {
			uses[m[1]] = append(uses[m[1]], f[1])
		}
		uses[m[1]] = append(uses[m[1]], "") // the command itself is used
	}
	return uses
}

// TestReadmeFlags checks the README against the code: every flag the
// README uses with a command exists, and the synopsis under "## Commands"
// lists exactly the flags of every command's -h.
func TestReadmeFlags(t *testing.T) {
	md := readme(t)
	// Every command line in a shell block, and every inline `picluster …`.
	used := invocations(strings.Join(codeBlocks(md, "sh"), "\n"))
	prose := regexp.MustCompile("(?ms)^```.*?^```").ReplaceAllString(md, "")
	var inline []string
	for _, span := range regexp.MustCompile("`[^`]*picluster[^`]*`").FindAllString(prose, -1) {
		inline = append(inline, strings.Join(strings.Fields(span), " ")) // a span may break across lines
	}
	for cmd, fs := range invocations(strings.Join(inline, "\n")) {
		used[cmd] = append(used[cmd], fs...)
	}
	for _, cmd := range commands {
		have := flagsOf(t, cmd)
		for _, f := range used[cmd] {
			if f != "" && !slices.Contains(have, f) && f != "help" {
				t.Errorf("README: picluster %s --%s: no such flag (picluster %s -h has %v)", cmd, f, cmd, have)
			}
		}
	}
	// The synopsis: one block, a command per unindented line.
	_, after, ok := strings.Cut(md, "\n## Commands\n")
	if !ok {
		t.Fatal(`README has no "## Commands"`)
	}
	blocks := codeBlocks(after, "")
	if len(blocks) == 0 {
		t.Fatal(`README: no synopsis block under "## Commands"`)
	}
	// "common flags:" lists the flags that "[common flags]" stands for.
	synopsis := make(map[string][]string)
	withCommon := make(map[string]bool)
	cur := ""
	for _, line := range strings.Split(blocks[0], "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "picluster" {
			cur = f[1]
			synopsis[cur] = nil
		} else if strings.HasPrefix(line, "common flags:") {
			cur = "common flags"
		}
		withCommon[cur] = withCommon[cur] || strings.Contains(line, "[common flags]")
		for _, m := range regexp.MustCompile(`--([a-z0-9-]+)`).FindAllStringSubmatch(line, -1) {
			synopsis[cur] = append(synopsis[cur], m[1])
		}
	}
	for cmd := range withCommon {
		if withCommon[cmd] {
			synopsis[cmd] = append(synopsis[cmd], synopsis["common flags"]...)
		}
	}
	delete(synopsis, "common flags")
	for _, cmd := range commands {
		got, ok := synopsis[cmd]
		if !ok {
			t.Errorf("README synopsis: no picluster %s", cmd)
			continue
		}
		if cmd == "version" {
			got = slices.DeleteFunc(got, func(f string) bool { return f == "version" }) // picluster --version
		}
		have := flagsOf(t, cmd)
		for _, f := range have {
			if !slices.Contains(got, f) {
				t.Errorf("README synopsis: picluster %s --%s is undocumented", cmd, f)
			}
		}
		for _, f := range got {
			if !slices.Contains(have, f) {
				t.Errorf("README synopsis: picluster %s --%s does not exist", cmd, f)
			}
		}
	}
	for cmd := range synopsis {
		if !slices.Contains(commands, cmd) && cmd != "help" {
			t.Errorf("README synopsis: picluster %s is no command", cmd)
		}
	}
}

// The markers of the generated schema in README.md.
const (
	schemaBegin = "<!-- summary schema: generated from the doc comments of collector.Summary by go test ./cmd/picluster -run ReadmeSchema -update; do not edit -->\n"
	schemaEnd   = "<!-- end of the summary schema -->\n"
)

// TestReadmeSchema checks that README.md documents every field of the
// summary (--json, /api/state) with the doc comment of its Go field, and
// that every field has one; -update rewrites the README's table.
func TestReadmeSchema(t *testing.T) {
	table := schemaTable(t)
	md := readme(t)
	before, rest, ok1 := strings.Cut(md, schemaBegin)
	_, after, ok2 := strings.Cut(rest, schemaEnd)
	if !ok1 || !ok2 {
		t.Fatalf("README.md lacks the markers of the summary schema:\n%s%s", schemaBegin, schemaEnd)
	}
	want := before + schemaBegin + table + schemaEnd + after
	if *update {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != md {
		t.Errorf("README.md's summary schema differs from the code; run go test ./cmd/picluster -run ReadmeSchema -update.\nwant:\n%s", table)
	}
}

// schemaTable renders the Summary's fields, nested ones with dotted paths,
// from the Go sources of the types.
func schemaTable(t testing.TB) string {
	t.Helper()
	types := make(map[string]*ast.StructType)
	for _, dir := range []string{"../../collector", "../../internal/wire"} {
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok {
					if st, ok := ts.Type.(*ast.StructType); ok {
						types[ts.Name.Name] = st
					}
				}
				return true
			})
		}
	}
	var b strings.Builder
	b.WriteString("| field | type | meaning |\n| --- | --- | --- |\n")
	var walk func(prefix string, st *ast.StructType)
	walk = func(prefix string, st *ast.StructType) {
		for _, f := range st.Fields.List {
			if len(f.Names) > 0 && !f.Names[0].IsExported() {
				continue
			}
			name := ""
			if f.Tag != nil {
				tag := reflect.StructTag(strings.Trim(f.Tag.Value, "`")).Get("json")
				name, _, _ = strings.Cut(tag, ",")
			}
			doc := strings.Join(strings.Fields(f.Doc.Text()+" "+f.Comment.Text()), " ")
			goName := typeName(f.Type)
			if len(f.Names) > 0 {
				goName = f.Names[0].Name
			}
			if doc == "" {
				t.Errorf("%s%s (%s): no doc comment", prefix, name, goName)
			}
			if len(f.Names) == 0 { // embedded: its fields are inline
				if inner := types[typeName(f.Type)]; inner != nil {
					walk(prefix, inner)
				}
				continue
			}
			if name == "-" || name == "" {
				continue
			}
			kind, inner, elem := jsonType(f.Type, types)
			meaning := strings.ReplaceAll(docMeaning(doc, goName), "|", `\|`)
			fmt.Fprintf(&b, "| `%s%s` | %s | %s |\n", prefix, name, kind, meaning)
			if inner != nil {
				walk(prefix+name+elem+".", inner)
			}
		}
	}
	walk("", types["Summary"])
	return b.String()
}

// docMeaning turns "Gaps is the seqs missing…" into "The seqs missing…".
func docMeaning(doc, goName string) string {
	for _, verb := range []string{" is ", " are ", " "} {
		if m, ok := strings.CutPrefix(doc, goName+verb); ok {
			doc = m
			break
		}
	}
	r, size := utf8.DecodeRuneInString(doc)
	return string(unicode.ToUpper(r)) + doc[size:]
}

func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.StarExpr:
		return typeName(e.X)
	}
	return ""
}

// jsonType names the JSON type of a Go type, and returns the struct whose
// fields are nested under it ("[]" for an array of them).
func jsonType(e ast.Expr, types map[string]*ast.StructType) (string, *ast.StructType, string) {
	switch e := e.(type) {
	case *ast.ArrayType:
		kind, inner, _ := jsonType(e.Elt, types)
		if e.Len != nil {
			return fmt.Sprintf("[%s, %s]", kind, kind), nil, ""
		}
		if inner != nil {
			return "array of objects", inner, "[]"
		}
		return "array of " + kind + "s", nil, ""
	case *ast.MapType:
		kind, _, _ := jsonType(e.Value, types)
		return "object of " + kind + "s", nil, ""
	}
	switch name := typeName(e); name {
	case "Count":
		return "integer (exact, any size)", nil, ""
	case "Float":
		return "number or null", nil, ""
	case "float64":
		return "number", nil, ""
	case "int", "uint64":
		return "integer", nil, ""
	case "string":
		return "string", nil, ""
	case "bool":
		return "boolean", nil, ""
	case "Time":
		return "string (RFC 3339)", nil, ""
	default:
		if st := types[name]; st != nil {
			return "object", st, ""
		}
		return name, nil, ""
	}
}

// TestReadmeJSONExample checks the README's --json example: it parses, and
// has every field of the summary (those omitted when empty aside) and no
// other, at the top level.
func TestReadmeJSONExample(t *testing.T) {
	_, after, _ := strings.Cut(readme(t), "\n## Commands\n")
	blocks := codeBlocks(after, "json")
	if len(blocks) == 0 {
		t.Fatal("README: no JSON example under ## Commands")
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(blocks[0]), &got); err != nil {
		t.Fatalf("README's --json example does not parse: %v", err)
	}
	st := reflect.TypeFor[collector.Summary]()
	for i := range st.NumField() {
		name, opts, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		if _, ok := got[name]; !ok && !strings.Contains(opts, "omit") {
			t.Errorf("README's --json example lacks %q", name)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("README's --json example has %q, which the summary has not", name)
	}
}
