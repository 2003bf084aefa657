package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigurationTable: the README's configuration reference is
// what `chorus config reference` prints (regenerate it with
// `make config-reference`).
func TestREADMEConfigurationTable(t *testing.T) {
	var out bytes.Buffer
	cmd := configCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"reference"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), out.String()) {
		t.Error("README.md's configuration table differs from `chorus config reference`: run `make config-reference`")
	}
}
