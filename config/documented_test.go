package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// decoderKeys returns every key the decoders know: the string keys of each
// map[string]Setter (or hardware.Setter) literal in the non-test sources of
// this package, hardware/ and each protocol package under it, with the file
// that names it.
func decoderKeys(t *testing.T) map[string]string {
	t.Helper()
	dirs, err := filepath.Glob("../hardware/*")
	if err != nil {
		t.Fatal(err)
	}
	dirs = append([]string{".", "../hardware"}, dirs...)
	keys := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok || !isSetterMap(lit.Type) {
					return true
				}
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if b, ok := kv.Key.(*ast.BasicLit); ok && b.Kind == token.STRING {
						k, err := strconv.Unquote(b.Value)
						if err != nil {
							t.Fatal(err)
						}
						keys[k] = fset.Position(b.Pos()).String()
					}
				}
				return true
			})
		}
	}
	return keys
}

// isSetterMap reports whether e is the type map[string]Setter or
// map[string]<pkg>.Setter.
func isSetterMap(e ast.Expr) bool {
	m, ok := e.(*ast.MapType)
	if !ok {
		return false
	}
	if k, ok := m.Key.(*ast.Ident); !ok || k.Name != "string" {
		return false
	}
	switch v := m.Value.(type) {
	case *ast.Ident:
		return v.Name == "Setter"
	case *ast.SelectorExpr:
		return v.Sel.Name == "Setter"
	}
	return false
}

// TestEveryDecoderKeyDocumented checks that each key a decoder accepts is
// documented in gateway/default.yaml (the text `edgegw config default`
// prints): on a line that starts, after indentation, "#" and "-", with
// "key:" and carries a comment, as a documented key or in a commented example.
// The keys come from the decoders' sources, so a new key cannot be forgotten.
func TestEveryDecoderKeyDocumented(t *testing.T) {
	keys := decoderKeys(t)
	if len(keys) < 100 { // the parse found the decoders (about 150 keys)
		t.Fatalf("found only %d decoder keys: %v", len(keys), keys)
	}
	text, err := os.ReadFile("../gateway/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for line := range strings.Lines(string(text)) {
		if !strings.Contains(line, "#") {
			continue
		}
		rest := strings.TrimLeft(line, " #-")
		if i := strings.Index(rest, ":"); i > 0 {
			documented[rest[:i]] = true
		}
	}
	for k, where := range keys {
		if !documented[k] {
			t.Errorf("key %q (%s) is not documented in gateway/default.yaml", k, where)
		}
	}
}
