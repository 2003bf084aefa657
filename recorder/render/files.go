package render

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// copyFile moves or copies src to dst (another file system).
func copyFile(src, dst string) (err error) {
	if os.Rename(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}

// concatQuote quotes a path for an FFmpeg concat script.
func concatQuote(path string) string {
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}

// seconds formats milliseconds as FFmpeg seconds.
func seconds(ms int64) string {
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	return fmt.Sprintf("%s%d.%03d", sign, ms/1000, ms%1000)
}
