package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requires returns the module paths a go.mod file requires, direct and
// indirect.
func requires(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	block := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			block = true
		case block && line == ")":
			block = false
		case block && line != "" && !strings.HasPrefix(line, "//"):
			out[strings.Fields(line)[0]] = true
		case strings.HasPrefix(line, "require "):
			out[strings.Fields(line)[1]] = true
		}
	}
	return out
}

// The product's go.mod lists only what the binary and its tests use: the
// Debian packaging tool (packaging/mkdeb, which uses nfpm as a library) is a
// module of its own, so nothing of goreleaser's (nfpm and what it alone
// brings: go-git, sprig, ...) is in the root module's graph (`go list -m
// all`), issue 16 point 6. Modules both need (bbolt, yaml, ...) are the
// product's own.
func TestRootModuleWithoutPackagingDeps(t *testing.T) {
	packaging := requires(t, "../../packaging/mkdeb/go.mod")
	const nfpm = "github.com/goreleaser/nfpm/v2"
	if !packaging[nfpm] {
		t.Fatalf("packaging/mkdeb/go.mod does not require %s: this test no longer checks what it says", nfpm)
	}
	for m := range requires(t, "../../go.mod") {
		if strings.HasPrefix(m, "github.com/goreleaser/") {
			t.Errorf("go.mod requires %s, a packaging module (packaging/mkdeb/go.mod)", m)
		}
	}
	list := exec.Command("go", "list", "-m", "all")
	list.Dir = "../.."
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	graph := strings.Split(strings.TrimSpace(string(out)), "\n")
	if graph[0] != "edgegw" {
		t.Fatalf("go list -m all did not list the root module first: %s", out)
	}
	for _, line := range graph {
		m := strings.Fields(line)[0]
		if strings.HasPrefix(m, "github.com/goreleaser/") || m == "github.com/go-git/go-git/v5" || m == "github.com/Masterminds/sprig/v3" {
			t.Errorf("%s, which only packaging/mkdeb needs, is in the root module's graph", m)
		}
	}
	t.Logf("root module graph: %d modules", len(graph))
}
