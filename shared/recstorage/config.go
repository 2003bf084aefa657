package recstorage

import (
	"context"
	"log/slog"

	"github.com/chorus-rtc/chorus/shared/config"
)

// New builds the storage recording.storage names: Local on
// recording.path, or S3 from recording.s3 (validated by config.Validate).
func New(ctx context.Context, rc config.Recording, log *slog.Logger) (Storage, error) {
	if rc.Storage != "s3" {
		return Local{Path: rc.Path}, nil
	}
	headers, err := rc.S3.HeaderMap()
	if err != nil {
		return nil, err
	}
	return NewS3(ctx, S3Config{
		Bucket: rc.S3.Bucket, Endpoint: rc.S3.Endpoint, PathStyle: rc.S3.PathStyle,
		AccessKey: rc.S3.AccessKey, SecretKey: rc.S3.SecretKey, Region: rc.S3.Region,
		Headers: headers, LocalPath: rc.Path, UploadDeadline: rc.S3.UploadDeadline, Logger: log,
	})
}
