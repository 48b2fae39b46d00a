package protocols

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// Every protocol package under hardware/ (one declaring a Plugin) is in the
// list: a new protocol is its package plus one entry here, and a package left
// out of the list fails here rather than at a user's `protocol:` key.
func TestEveryProtocolPackageListed(t *testing.T) {
	var listed []string
	for _, p := range Registry().Plugins() {
		listed = append(listed, filepath.Base(reflect.TypeOf(p).PkgPath()))
	}
	files, err := filepath.Glob("../*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if f.Scope.Lookup("Plugin") != nil && !slices.Contains(found, filepath.Base(filepath.Dir(path))) {
			found = append(found, filepath.Base(filepath.Dir(path)))
		}
	}
	if len(found) == 0 {
		t.Fatal("no protocol package found under hardware/")
	}
	for _, pkg := range found {
		if !slices.Contains(listed, pkg) {
			t.Errorf("hardware/%s declares a Plugin but is not in Registry's list", pkg)
		}
	}
	if got := Registry().Names(); !slices.Equal(got, []string{"modbus", "line"}) {
		t.Errorf("protocols %q, want modbus, line (the order of the configuration's messages)", got)
	}
}
