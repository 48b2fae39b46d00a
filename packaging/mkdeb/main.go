// Command mkdeb builds the edgegw Debian packages from cross-built binaries with
// nfpm (github.com/goreleaser/nfpm/v2) used as a library: no Docker, no dpkg-dev,
// no network. `make packages` runs it, from the repository root, as
//
//	go -C packaging/mkdeb run . -describe "$(git describe --tags --always --dirty)" \
//	    -commits "$(git rev-list --count HEAD)" -out $PWD/bin \
//	    armhf=$PWD/bin/edgegw-linux-armv6 arm64=$PWD/bin/edgegw-linux-arm64 amd64=$PWD/bin/edgegw-linux-amd64
//
// mkdeb is its own Go module (packaging/mkdeb/go.mod, module edgegw/packaging/mkdeb,
// with edgegw replaced by this repository) so that nfpm and the ~80 modules only it needs
// (go-git, sprig, ...) stay out of the product's go.mod: the root module lists
// only what the edgegw binary and its tests use. `go test ./...` at the root does
// not descend into it; `make test` vets and tests it explicitly.
//
// and writes bin/edgegw_<version>_<arch>.deb for each ARCH=BINARY argument. The
// Debian version is derived from the git description (see debVersion). File
// times are SOURCE_DATE_EPOCH (or -mtime) so that a package is reproducible.
//
// Each package holds /usr/bin/edgegw, the configuration /etc/edgegw/edgegw.yaml
// (a conffile, 0640), the unit /lib/systemd/system/edgegw.service, the maintainer
// scripts of packaging/deb, /usr/share/doc/edgegw (copyright with the licenses
// of every Go module linked into the binary, changelog.gz, the install guide) and
// the lintian overrides, and the manual page edgegw(1).
package main

import (
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"edgegw/packaging/deb"
)

// Package metadata.
const (
	section     = "net"
	priority    = "optional"
	description = `MQTT edge gateway with persistent sessions and a cloud bridge
 edgegw is one statically linked program for Raspberry-Pi-class gateways: the
 MQTT 3.1.1 and 5 broker of the local site, a collector for serial- and
 LoRa-attached meters, and a store-and-forward bridge to an upstream cloud
 broker. Persistent sessions and their queued messages survive restarts.
 .
 The package runs edgegw as the systemd service edgegw.service, as user edgegw
 (group dialout for serial ports), with /etc/edgegw/edgegw.yaml and its data
 in /var/lib/edgegw.`
	defaultMaintainer = "edgegw maintainers <edgegw@example.com>"
)

// debArches maps the Debian architectures mkdeb accepts to the GOARCH (and GOARM)
// their binary must have.
var debArches = map[string]struct{ goarch, goarm string }{
	"armhf": {"arm", "6"}, // ARMv6 + VFP: Raspberry Pi OS armhf and Debian armhf alike
	"arm64": {"arm64", ""},
	"amd64": {"amd64", ""},
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mkdeb: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	describe := fs.String("describe", "", "`git describe --tags --always --dirty` of the build (required)")
	commits := fs.Int("commits", 0, "number of commits (git rev-list --count HEAD); orders untagged builds")
	out := fs.String("out", "bin", "output `directory`")
	maintainer := fs.String("maintainer", defaultMaintainer, "Maintainer field")
	mtime := fs.Int64("mtime", 0, "file times, Unix seconds (default: SOURCE_DATE_EPOCH, else now)")
	var docs multiFlag
	fs.Var(&docs, "doc", "extra `FILE` for /usr/share/doc/edgegw (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mkdeb -describe DESC [flags] ARCH=BINARY...  (ARCH: armhf, arm64, amd64)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *describe == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("need -describe and at least one ARCH=BINARY")
	}
	version, err := debVersion(*describe, *commits)
	if err != nil {
		return err
	}
	t := time.Now().UTC().Truncate(time.Second)
	if *mtime != 0 {
		t = time.Unix(*mtime, 0).UTC()
	} else if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		t = time.Unix(n, 0).UTC()
	}
	for _, a := range fs.Args() {
		arch, bin, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q: want ARCH=BINARY", a)
		}
		p := Package{Arch: arch, Binary: bin, Version: version, Describe: *describe,
			Maintainer: *maintainer, MTime: t, Docs: docs}
		path, err := p.Build(*out)
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%d bytes\n", path, fi.Size())
	}
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// Package is one .deb to build.
type Package struct {
	Arch       string    // Debian architecture: armhf, arm64 or amd64
	Binary     string    // the edgegw binary for Arch
	Version    string    // Debian version (debVersion)
	Describe   string    // git description, for the changelog
	Maintainer string    // Maintainer field
	MTime      time.Time // time of every file
	Docs       []string  // extra files for /usr/share/doc/edgegw
}

// FileName returns the package's conventional file name.
func (p Package) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", deb.Name, p.Version, p.Arch)
}

// Build writes the package into dir and returns its path.
func (p Package) Build(dir string) (string, error) {
	want, ok := debArches[p.Arch]
	if !ok {
		return "", fmt.Errorf("unsupported architecture %q (want armhf, arm64 or amd64)", p.Arch)
	}
	bi, err := buildinfo.ReadFile(p.Binary)
	if err != nil {
		return "", fmt.Errorf("read build info of %s: %w", p.Binary, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["GOARCH"] != want.goarch || (want.goarm != "" && settings["GOARM"] != want.goarm) {
		return "", fmt.Errorf("%s is built for %s/%s GOARM=%q, want linux/%s GOARM=%q", p.Binary,
			settings["GOOS"], settings["GOARCH"], settings["GOARM"], want.goarch, want.goarm)
	}
	if settings["CGO_ENABLED"] != "0" {
		return "", fmt.Errorf("%s is not built with CGO_ENABLED=0", p.Binary)
	}

	stage, err := os.MkdirTemp("", "mkdeb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	put := func(name string, data []byte, mode os.FileMode) (string, error) {
		path := filepath.Join(stage, name)
		return path, os.WriteFile(path, data, mode)
	}
	cfg, err := deb.Config()
	if err != nil {
		return "", err
	}
	copyright, err := copyrightFile(bi, p.Describe)
	if err != nil {
		return "", err
	}
	changelog, err := gzip9n(fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- %s  %s\n",
		deb.Name, p.Version, p.Describe, p.Maintainer, p.MTime.Format(time.RFC1123Z)))
	if err != nil {
		return "", err
	}
	manPage, err := gzip9n(deb.ManPage)
	if err != nil {
		return "", err
	}
	staged := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"edgegw.yaml", cfg, 0o640},
		{"edgegw.service", []byte(deb.Unit(deb.BinPath)), 0o644},
		{"copyright", copyright, 0o644},
		{"changelog.gz", changelog, 0o644},
		{"edgegw.1.gz", manPage, 0o644},
		{"lintian-overrides", []byte(deb.LintianOverrides), 0o644},
	}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := deb.Scripts.ReadFile(name)
		if err != nil {
			return "", err
		}
		staged = append(staged, struct {
			name string
			data []byte
			mode os.FileMode
		}{name, b, 0o755})
	}
	for _, s := range staged {
		if _, err := put(s.name, s.data, s.mode); err != nil {
			return "", err
		}
	}
	src := func(name string) string { return filepath.Join(stage, name) }
	file := func(source, dest string, mode os.FileMode) *files.Content {
		return &files.Content{Source: source, Destination: dest, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	const doc = "/usr/share/doc/" + deb.Name
	contents := files.Contents{
		file(p.Binary, deb.BinPath, 0o755),
		{Destination: deb.ConfigDir, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: src("edgegw.yaml"), Destination: deb.ConfigPath, Type: files.TypeConfig,
			FileInfo: &files.ContentFileInfo{Mode: deb.ConfigMode}},
		file(src("edgegw.service"), deb.UnitPath, 0o644),
		file(src("copyright"), doc+"/copyright", 0o644),
		file(src("changelog.gz"), doc+"/changelog.gz", 0o644),
		file(src("edgegw.1.gz"), "/usr/share/man/man1/edgegw.1.gz", 0o644),
		file(src("lintian-overrides"), "/usr/share/lintian/overrides/"+deb.Name, 0o644),
	}
	for _, d := range p.Docs {
		contents = append(contents, file(d, doc+"/"+filepath.Base(d), 0o644))
	}
	info := &nfpm.Info{
		Name:          deb.Name,
		Arch:          p.Arch,
		Platform:      "linux",
		Version:       p.Version,
		VersionSchema: "none", // p.Version is already a Debian version
		Section:       section,
		Priority:      priority,
		Maintainer:    p.Maintainer,
		Description:   description,
		MTime:         p.MTime,
		Overridables: nfpm.Overridables{
			Depends:  []string{"adduser"},
			Contents: contents,
			Umask:    0o022,
			Scripts: nfpm.Scripts{
				PostInstall: src("postinst"),
				PreRemove:   src("prerm"),
				PostRemove:  src("postrm"),
			},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, p.FileName())
	var buf bytes.Buffer
	if err := packager.Package(info, &buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

var (
	describeTagged = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]+)$`)
	describeHash   = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
	debVersionRE   = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	notVersionChar = regexp.MustCompile(`[^A-Za-z0-9.+~]+`)
)

// debVersion turns `git describe --tags --always --dirty` into a Debian
// version (a native one: no revision) that sorts the way the builds were made:
//
//	v1.2.0                 -> 1.2.0
//	v1.2.0-rc1             -> 1.2.0~rc1            (before 1.2.0)
//	v1.2.0-3-gabc1234      -> 1.2.0+git3.gabc1234  (after 1.2.0)
//	abc1234 (no tag yet)   -> 0.0.0+git<commits>.gabc1234
//	...-dirty              -> ...+dirty
func debVersion(describe string, commits int) (string, error) {
	d := strings.TrimSpace(describe)
	dirty := strings.HasSuffix(d, "-dirty")
	d = strings.TrimSuffix(d, "-dirty")
	var v string
	switch m := describeTagged.FindStringSubmatch(d); {
	case m != nil:
		v = upstream(m[1]) + "+git" + m[2] + ".g" + m[3]
	case describeHash.MatchString(d):
		v = fmt.Sprintf("0.0.0+git%d.g%s", commits, d)
	default:
		v = upstream(d)
	}
	if dirty {
		v += "+dirty"
	}
	if !debVersionRE.MatchString(v) {
		return "", fmt.Errorf("cannot make a Debian version of %q (got %q)", describe, v)
	}
	return v, nil
}

// upstream makes a tag an upstream version: no leading v, pre-release parts
// after ~ (so that they sort before the release), other characters as dots.
func upstream(tag string) string {
	t := strings.TrimPrefix(strings.TrimPrefix(tag, "v"), "V")
	t = strings.ReplaceAll(t, "-", "~")
	t = notVersionChar.ReplaceAllString(t, ".")
	if t == "" || t[0] < '0' || t[0] > '9' {
		t = "0.0.0+" + strings.TrimLeft(t, ".+~")
	}
	return t
}

// gzip9n compresses text as Debian wants changelogs and manual pages: like
// gzip -9n, maximum compression, no name, no time stamp.
func gzip9n(text string) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(zw, text); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// copyrightFile names edgegw's copyright and gives the license of the Go
// toolchain and of every module linked into the binary, read from the module
// cache (which the build has just filled).
func copyrightFile(bi *buildinfo.BuildInfo, describe string) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "edgegw, built from git %s.\n\n", describe)
	b.WriteString("Copyright: the edgegw authors. All rights reserved.\n\n")
	b.WriteString("/usr/bin/edgegw is a statically linked Go program. It contains the Go\n")
	b.WriteString("standard library and the Go modules listed below; each one's copyright and\n")
	b.WriteString("license follows in full. On Debian systems the complete texts of the\n")
	b.WriteString("Apache License 2.0 and of the other common licenses are in\n")
	b.WriteString("/usr/share/common-licenses/.\n")
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	text, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("Go license: %w", err)
	}
	licenseSection(&b, "Go standard library "+bi.GoVersion, text)
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	for _, dep := range bi.Deps {
		m := dep
		if m.Replace != nil {
			m = m.Replace
		}
		dir := filepath.Join(strings.TrimSpace(string(modcache)), escapeModPath(m.Path)+"@"+m.Version)
		text, err := licenseText(dir)
		if err != nil {
			return nil, fmt.Errorf("license of %s %s: %w", m.Path, m.Version, err)
		}
		licenseSection(&b, m.Path+" "+m.Version, text)
	}
	return []byte(b.String()), nil
}

func licenseSection(b *strings.Builder, title string, text []byte) {
	fmt.Fprintf(b, "\n%s\n%s\n\n", strings.Repeat("-", 78), title)
	b.Write(bytes.TrimSpace(text))
	b.WriteString("\n")
}

// licenseText returns the license files of the module in dir, concatenated.
func licenseText(dir string) ([]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range entries {
		n := strings.ToUpper(e.Name())
		if e.IsDir() || !(strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") ||
			strings.HasPrefix(n, "COPYING") || n == "NOTICE") {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(out) > 0 {
			out = append(out, "\n\n"...)
		}
		out = append(out, bytes.TrimSpace(text)...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no LICENSE, COPYING or NOTICE file in %s", dir)
	}
	return out, nil
}

// escapeModPath is the module cache's case encoding of a module path: each
// upper-case letter becomes '!' and its lower-case form.
func escapeModPath(path string) string {
	var b strings.Builder
	for _, r := range path {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
