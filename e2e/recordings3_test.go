//go:build e2e

package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/s3test"
)

// TestRecordingS3 records two Chromium pages with OpenVidu Pro's S3 storage
// (OPENVIDU_PRO_RECORDING_STORAGE=s3 and its OPENVIDU_PRO_AWS_* variables)
// against a real S3 server in its own process (gofakes3, objects on disk):
// the recording is ready only once uploaded, its objects are under the
// bucket's folder, the recording path keeps nothing, the masters stream the
// file from the bucket (whole and by range, Basic auth) and delete it with
// the recording. With the S3 server down, the upload retries until its
// deadline, then the recording fails and its files stay in the recording
// path, until DELETE removes them.
func TestRecordingS3(t *testing.T) {
	srv := s3test.Start(t, "chorus-recordings")
	dc := startDev(t, devOptions{Args: []string{"--masters", "2", "--media-nodes", "1", "--recorders", "1"}, Env: []string{
		"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=chorus-recordings/cluster-a",
		"OPENVIDU_PRO_AWS_S3_SERVICE_ENDPOINT=" + srv.Endpoint, "OPENVIDU_PRO_AWS_S3_WITH_PATH_STYLE_ACCESS=true",
		"OPENVIDU_PRO_AWS_ACCESS_KEY=e2e-access", "OPENVIDU_PRO_AWS_SECRET_KEY=e2e-secret",
		`OPENVIDU_PRO_AWS_S3_HEADERS={"x-amz-meta-cluster":"e2e"}`,
		"CHORUS_RECORDING_S3_UPLOAD_DEADLINE=4s",
	}})
	p := startPages(t, dc)
	sid := "recs3_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	p.join(sid, 2)
	p.waitVideo(1, 30*time.Second)

	id := p.startRecording(sid, `{"name":"s3talk","outputMode":"COMPOSED","resolution":"640x480"}`)
	startedAt := time.Now()
	time.Sleep(4 * time.Second)
	p.stopRecording(id)
	wall := time.Since(startedAt)
	stopped := time.Now()
	ready := p.waitRecording(id, "ready", 60*time.Second)
	t.Logf("rendered and uploaded %s after the stop (%d bytes)", time.Since(stopped).Round(100*time.Millisecond), ready.Size)

	object := srv.ObjectFile("cluster-a/" + id + "/s3talk.mp4")
	stored, err := os.ReadFile(object)
	if err != nil {
		t.Fatalf("the bucket has no s3talk.mp4 under cluster-a/%s: %v", id, err)
	}
	if _, err := os.Stat(srv.ObjectFile("cluster-a/" + id + "/" + id + ".jpg")); err != nil {
		t.Errorf("the bucket has no thumbnail: %v", err)
	}
	if int64(len(stored)) != ready.Size {
		t.Errorf("object of %d bytes, the recording says %d", len(stored), ready.Size)
	}
	if _, err := os.Stat(filepath.Join(dc.RecordingPath, id)); !os.IsNotExist(err) {
		t.Errorf("the recording path keeps %s after its upload: %v", id, err)
	}
	meta, err := http.Head(srv.Endpoint + "/chorus-recordings/cluster-a/" + id + "/s3talk.mp4")
	if err == nil {
		_ = meta.Body.Close()
	}
	if err != nil || meta.Header.Get("x-amz-meta-cluster") != "e2e" {
		t.Errorf("OPENVIDU_PRO_AWS_S3_HEADERS not on the object: %v %v", err, meta.Header)
	}

	// The URL is the masters' (through the proxy), which stream the object.
	download := func(header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ready.URL, nil)
		req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	resp, body := download(nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, stored) {
		t.Fatalf("GET %s: %d, %d bytes (the object has %d)", ready.URL, resp.StatusCode, len(body), len(stored))
	}
	file := filepath.Join(t.TempDir(), "s3talk.mp4")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	info := ffprobe(t, file)
	if d := info.duration(); d < wall-time.Second || d > wall+time.Second {
		t.Errorf("the downloaded recording lasts %s, its wall time was %s", d, wall)
	}
	if v, a := info.codec("video"), info.codec("audio"); v != "h264" || a != "aac" {
		t.Errorf("codecs %q and %q, want h264 and aac", v, a)
	}
	resp, body = download(http.Header{"Range": {"bytes=0-7"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, stored[:8]) {
		t.Errorf("GET with a range: %d %q", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, ready.URL, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET without credentials: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}

	// Audio-only (hasVideo false): OpenVidu's <name>.webm with Opus alone,
	// uploaded and streamed the same way.
	voiceID := p.startRecording(sid, `{"name":"voice","outputMode":"COMPOSED","hasVideo":false}`)
	voiceStart := time.Now()
	time.Sleep(2 * time.Second)
	p.stopRecording(voiceID)
	voiceWall := time.Since(voiceStart)
	voice := p.waitRecording(voiceID, "ready", 60*time.Second)
	if filepath.Base(voice.URL) != "voice.webm" {
		t.Errorf("audio-only recording URL %q, want .../voice.webm", voice.URL)
	}
	voiceFile := filepath.Join(t.TempDir(), "voice.webm")
	if err := os.WriteFile(voiceFile, fetch(t, dc, voice.URL), 0o644); err != nil {
		t.Fatal(err)
	}
	vinfo := ffprobe(t, voiceFile)
	if v, a := vinfo.codec("video"), vinfo.codec("audio"); v != "" || a != "opus" {
		t.Errorf("audio-only codecs: video %q, audio %q; want none and opus", v, a)
	}
	if d := vinfo.duration(); d < voiceWall-time.Second || d > voiceWall+time.Second {
		t.Errorf("the audio-only recording lasts %s, its wall time was %s", d, voiceWall)
	}
	if r := p.rec("delete", voiceID); !r.Deleted {
		t.Errorf("deleteRecording of the audio-only one: %+v", r)
	}

	// The S3 service down: the upload retries for its 4 s, then fails.
	srv.Stop()
	failedID := p.startRecording(sid, `{"name":"lost","outputMode":"COMPOSED","resolution":"640x480"}`)
	time.Sleep(2 * time.Second)
	p.stopRecording(failedID)
	stopped = time.Now()
	var failed *recording
	for deadline := time.Now().Add(60 * time.Second); failed == nil; {
		r := p.rec("get", failedID)
		switch {
		case r.Recording != nil && r.Recording.Status == "failed":
			failed = r.Recording
		case r.Recording != nil && r.Recording.Status == "ready":
			t.Fatalf("recording %s ready with the S3 service down", failedID)
		case time.Now().After(deadline):
			t.Fatalf("recording %s not failed 60 s after its stop with the S3 service down: %+v", failedID, r.Recording)
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(stopped)
	t.Logf("upload to a dead S3 service failed %s after the stop (render, then retries within a 4 s deadline)", took.Round(100*time.Millisecond))
	// Attempts 1 s, then 2 s apart (with jitter) fit in the 4 s deadline:
	// at least three, the last ~3 s after the first; the one after would
	// pass the deadline, so the upload gives up then.
	if took < 2500*time.Millisecond {
		t.Errorf("failed %s after the stop: too soon to have retried", took)
	}
	if failed.URL != "" {
		t.Errorf("a failed recording has a URL: %q", failed.URL)
	}
	leftover := filepath.Join(dc.RecordingPath, failedID, "lost.mp4")
	if _, err := os.Stat(leftover); err != nil {
		t.Errorf("the failed upload's file is not kept in the recording path: %v", err)
	}
	if r := p.rec("delete", failedID); !r.Deleted {
		t.Errorf("deleteRecording of the failed one: %+v", r)
	}
	if _, err := os.Stat(filepath.Dir(leftover)); !os.IsNotExist(err) {
		t.Errorf("DELETE left the failed recording's files: %v", err)
	}

	// Back up: DELETE removes the objects, and the URL answers 404.
	srv.Restart()
	if r := p.rec("delete", id); !r.Deleted {
		t.Errorf("deleteRecording: %+v", r)
	}
	if _, err := os.Stat(object); !os.IsNotExist(err) {
		t.Errorf("the object is still in the bucket after DELETE: %v", err)
	}
	if resp, _ := download(nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a deleted recording: %d", resp.StatusCode)
	}
	p.reset()
	assertNoSessionKeys(t, dc)
	assertNoMasterConnections(t, dc)
}

// fetch GETs a recording file through the proxy with the OpenVidu secret.
func fetch(t *testing.T, dc *devCluster, url string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return body
}
