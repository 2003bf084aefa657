package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory, seen from this package.
const repoRoot = "../.."

// buildHosts are the package hosts this machine's build environment uses:
// the Go module proxies (`go env GOPROXY`), the npm registry
// (`npm config get registry`) and the apt sources' mirrors.
func buildHosts(t *testing.T) map[string]string {
	t.Helper()
	hosts := map[string]string{}
	addURL := func(raw, from string) {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.Hostname() != "" {
			hosts[u.Hostname()] = from
		}
	}
	if out, err := exec.Command("go", "env", "GOPROXY").Output(); err == nil {
		for _, p := range strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == '|' }) {
			addURL(p, "go env GOPROXY")
		}
	}
	if out, err := exec.Command("npm", "config", "get", "registry").Output(); err == nil {
		addURL(string(out), "npm config get registry")
	}
	uri := regexp.MustCompile(`https?://[^\s\]"']+`)
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, f := range append(files, "/etc/apt/sources.list") {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); !strings.HasPrefix(line, "#") {
				for _, m := range uri.FindAllString(line, -1) {
					addURL(m, f)
				}
			}
		}
	}
	return hosts
}

// TestNoPackageHostInRepository: the build files take the package hosts
// from the build environment (Dockerfile's GOPROXY and NPM_REGISTRY
// arguments, docker/images.sh's apt sources): none of this machine's
// package hosts is written in any file of the repository.
func TestNoPackageHostInRepository(t *testing.T) {
	hosts := buildHosts(t)
	if len(hosts) == 0 {
		t.Skip("this machine names no package host (no go, npm or apt sources)")
	}
	out, err := exec.Command("git", "-C", repoRoot, "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		raw, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil || bytes.IndexByte(raw, 0) >= 0 {
			continue // deleted in the work tree, or binary
		}
		for host, from := range hosts {
			if bytes.Contains(raw, []byte(host)) {
				t.Errorf("%s names %s, the package host of %s: take it from the build environment", name, host, from)
			}
		}
	}
}

// TestDockerfileChecksOpenViduBrowserAgainstTheLockfile: the image's
// openvidu-browser bundle is the version web/package.json pins, checked
// against the sha512 web/package-lock.json records.
func TestDockerfileChecksOpenViduBrowserAgainstTheLockfile(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	arg := func(name string) string {
		m := regexp.MustCompile(`(?m)^ARG ` + name + `=(\S+)$`).FindSubmatch(dockerfile)
		if m == nil {
			t.Fatalf("Dockerfile has no ARG %s=...", name)
		}
		return string(m[1])
	}
	version, sum := arg("OPENVIDU_BROWSER"), arg("OPENVIDU_BROWSER_SHA512")
	if !bytes.Contains(dockerfile, []byte(`sha512sum -c`)) {
		t.Error("the Dockerfile does not check the bundle's sha512")
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "web", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		t.Fatal(err)
	}
	pkg := lock.Packages["node_modules/openvidu-browser"]
	digest, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pkg.Integrity, "sha512-"))
	if err != nil || !strings.HasPrefix(pkg.Integrity, "sha512-") {
		t.Fatalf("lockfile integrity %q: %v", pkg.Integrity, err)
	}
	if pkg.Version != version || hex.EncodeToString(digest) != sum {
		t.Errorf("Dockerfile: openvidu-browser %s sha512 %s; lockfile: %s sha512 %s", version, sum, pkg.Version, hex.EncodeToString(digest))
	}
}
