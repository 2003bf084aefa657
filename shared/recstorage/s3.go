package recstorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config configures S3 storage with OpenVidu Pro's properties
// (recording.md "Uploading recordings to S3").
type S3Config struct {
	// Bucket is OPENVIDU_PRO_AWS_S3_BUCKET: a bucket name, maybe followed
	// by a folder ("bucket/some/folder"); objects are
	// <folder>/<recordingId>/<file>.
	Bucket string
	// Endpoint is OPENVIDU_PRO_AWS_S3_SERVICE_ENDPOINT, the URL of any
	// S3-compatible service; empty: AWS S3.
	Endpoint string
	// PathStyle is OPENVIDU_PRO_AWS_S3_WITH_PATH_STYLE_ACCESS: bucket in
	// the URL's path rather than its host name.
	PathStyle bool
	// AccessKey and SecretKey are OPENVIDU_PRO_AWS_ACCESS_KEY and
	// OPENVIDU_PRO_AWS_SECRET_KEY; empty: the SDK's default credential
	// chain (environment, shared files, instance roles).
	AccessKey, SecretKey string
	// Region is OPENVIDU_PRO_AWS_REGION (default us-east-1, which any
	// S3-compatible service accepts for signing).
	Region string
	// Headers go with every upload (OPENVIDU_PRO_AWS_S3_HEADERS), e.g.
	// x-amz-server-side-encryption: AES256.
	Headers map[string]string
	// LocalPath is the recording path, where recordings are rendered
	// before their upload: Delete also removes what a failed upload left
	// there (when this process sees that directory).
	LocalPath string
	// UploadDeadline bounds how long a recording's upload is retried
	// (exponential backoff with jitter) before Publish gives up (default
	// 5 min).
	UploadDeadline time.Duration
	// RetryWaitMin and RetryWaitMax bound the wait between two upload
	// attempts (defaults 1 s and 30 s).
	RetryWaitMin, RetryWaitMax time.Duration
	Logger                     *slog.Logger
}

// S3 keeps recordings in an S3-compatible bucket (AWS SDK for Go v2). A
// recording's files are uploaded once it is rendered; the recording is
// ready only then (OpenVidu Pro: "Recordings must be first stopped before
// they are automatically uploaded"), and masters stream them from the
// bucket.
type S3 struct {
	cfg    S3Config
	client *s3.Client
	bucket string
	prefix string // "" or "folder/"
	log    *slog.Logger
}

var _ Storage = (*S3)(nil)

// NewS3 returns S3 storage; it does not contact the service.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	bucket, folder, _ := strings.Cut(strings.Trim(cfg.Bucket, "/"), "/")
	if bucket == "" {
		return nil, errors.New("recstorage: an S3 bucket is required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.UploadDeadline <= 0 {
		cfg.UploadDeadline = 5 * time.Minute
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = time.Second
	}
	if cfg.RetryWaitMax < cfg.RetryWaitMin {
		cfg.RetryWaitMax = max(cfg.RetryWaitMin, 30*time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cfg.Region),
		// A service that does not answer must not hold an upload attempt
		// forever; a large upload may still take as long as it needs.
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().
			WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second }).
			WithTransportOptions(func(t *http.Transport) { t.ResponseHeaderTimeout = time.Minute })),
		// S3-compatible services rarely know the SDK's newer trailing
		// checksums: only where an operation requires them.
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.AccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("recstorage: S3 configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	prefix := ""
	if folder != "" {
		prefix = strings.Trim(folder, "/") + "/"
	}
	return &S3{cfg: cfg, client: client, bucket: bucket, prefix: prefix, log: cfg.Logger}, nil
}

func (s *S3) key(id, file string) string { return s.prefix + id + "/" + file }

// Publish uploads every file of dir, retrying the whole set until
// UploadDeadline, then removes dir. An upload that never succeeds leaves
// dir as it was and returns the last error.
func (s *S3) Publish(ctx context.Context, id, dir string) error {
	names, err := files(dir)
	if err != nil {
		return fmt.Errorf("recstorage: %w", err)
	}
	deadline := time.Now().Add(s.cfg.UploadDeadline)
	wait := s.cfg.RetryWaitMin
	for attempt := 1; ; attempt++ {
		err = s.upload(ctx, id, dir, names)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		next := time.Duration(float64(wait) * (0.5 + rand.Float64())) // jitter: 0.5-1.5x
		if time.Now().Add(next).After(deadline) {
			return fmt.Errorf("recstorage: upload of %s to bucket %s gave up after %d attempts: %w", id, s.bucket, attempt, err)
		}
		s.log.Warn("recording upload failed: retrying", "recording", id, "attempt", attempt, "wait", next, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next):
		}
		wait = min(2*wait, s.cfg.RetryWaitMax)
	}
	if err := os.RemoveAll(dir); err != nil {
		s.log.Warn("remove uploaded recording files", "recording", id, "err", err)
	}
	return nil
}

func (s *S3) upload(ctx context.Context, id, dir string, names []string) error {
	for _, name := range names {
		if err := s.put(ctx, id, filepath.Join(dir, name), name); err != nil {
			return err
		}
	}
	return nil
}

func (s *S3) put(ctx context.Context, id, full, name string) error {
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.key(id, name)), Body: f,
		ContentLength: aws.Int64(st.Size()),
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		in.ContentType = aws.String(t)
	}
	_, err = s.client.PutObject(ctx, in, func(o *s3.Options) {
		for k, v := range s.cfg.Headers {
			o.APIOptions = append(o.APIOptions, smithyhttp.SetHeaderValue(k, v))
		}
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// Serve streams a file from the bucket, passing a Range request on (206
// with Content-Range), and answers HEAD from the object's metadata.
func (s *S3) Serve(w http.ResponseWriter, r *http.Request, id, file string) error {
	ctx := r.Context()
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	if r.Method == http.MethodHead {
		out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(id, file))})
		if err != nil {
			return s.notFound(err)
		}
		setObjectHeaders(h, out.ContentType, out.ContentLength, out.ETag, out.LastModified)
		w.WriteHeader(http.StatusOK)
		return nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(id, file))}
	if rg := r.Header.Get("Range"); rg != "" {
		in.Range = aws.String(rg)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return nil
		}
		return s.notFound(err)
	}
	defer out.Body.Close()
	setObjectHeaders(h, out.ContentType, out.ContentLength, out.ETag, out.LastModified)
	status := http.StatusOK
	if out.ContentRange != nil {
		h.Set("Content-Range", *out.ContentRange)
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	_, _ = io.Copy(w, out.Body) // the client went away, or the bucket broke off: nothing more to tell
	return nil
}

func setObjectHeaders(h http.Header, contentType *string, length *int64, etag *string, modified *time.Time) {
	if contentType != nil {
		h.Set("Content-Type", *contentType)
	}
	if length != nil {
		h.Set("Content-Length", strconv.FormatInt(*length, 10))
	}
	if etag != nil {
		h.Set("ETag", *etag)
	}
	if modified != nil {
		h.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	}
}

// notFound maps a missing object to ErrNotFound; other errors are returned
// wrapped (the caller answers 502: the bucket failed).
func (s *S3) notFound(err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return ErrNotFound
	}
	return fmt.Errorf("recstorage: %w", err)
}

// Delete removes every object under <folder>/<id>/, and <LocalPath>/<id>.
func (s *S3) Delete(ctx context.Context, id string) error {
	if s.cfg.LocalPath != "" {
		if err := os.RemoveAll(filepath.Join(s.cfg.LocalPath, id)); err != nil {
			return fmt.Errorf("recstorage: %w", err)
		}
	}
	prefix := s.key(id, "")
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("recstorage: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: o.Key}); err != nil {
				return fmt.Errorf("recstorage: delete %s: %w", aws.ToString(o.Key), err)
			}
		}
	}
	return nil
}
