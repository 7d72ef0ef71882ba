// Command oci-image packs a root file system directory into a one-layer OCI
// image and pushes it to a registry over plain HTTP (the harness's loopback
// registry), so that container workers pull their images the way they do in
// production. Docker is not needed and nothing leaves the machine.
//
//	oci-image --registry 127.0.0.1:5000 --repo library/busybox --tag 1.35 \
//	    --rootfs DIR [--entrypoint /bin/sh] [--cmd a,b] [--user 65534:65534] \
//	    [--env K=V]... [--workdir /]
//
// The layer is reproducible: entries in name order, owned by root unless the
// directory's owner says otherwise, every time stamp zero. The same directory
// gives the same digest, which is printed as REGISTRY/REPO:TAG@DIGEST.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layer returns the uncompressed and the gzip-compressed tar of root.
func layer(root string) (raw, compressed []byte, err error) {
	var paths []string
	err = filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, path := range paths {
		info, err := os.Lstat(path)
		if err != nil {
			return nil, nil, err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return nil, nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, nil, err
		}
		rel, _ := filepath.Rel(root, path)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, nil, err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return nil, nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.ModTime = time.Unix(0, 0)
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), gz.Bytes(), nil
}

type registry struct {
	base string // http://HOST:PORT
	repo string
}

func (r registry) pushBlob(blob []byte) error {
	digest := digestOf(blob)
	head, err := http.Head(fmt.Sprintf("%s/v2/%s/blobs/%s", r.base, r.repo, digest))
	if err != nil {
		return err
	}
	head.Body.Close()
	if head.StatusCode == http.StatusOK {
		return nil
	}
	start, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/", r.base, r.repo), "", nil)
	if err != nil {
		return err
	}
	start.Body.Close()
	if start.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting an upload to %s: %s", r.repo, start.Status)
	}
	loc, err := url.Parse(start.Header.Get("Location"))
	if err != nil {
		return err
	}
	base, _ := url.Parse(r.base)
	target := base.ResolveReference(loc)
	q := target.Query()
	q.Set("digest", digest)
	target.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, target.String(), bytes.NewReader(blob))
	req.Header.Set("Content-Type", "application/octet-stream")
	done, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer done.Body.Close()
	if done.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(done.Body)
		return fmt.Errorf("uploading %s: %s %s", digest, done.Status, body)
	}
	return nil
}

func (r registry) pushManifest(tag string, manifest []byte) error {
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", r.base, r.repo, tag), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", mediaManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pushing the manifest %s:%s: %s %s", r.repo, tag, resp.Status, body)
	}
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func main() {
	var envs listFlag
	host := flag.String("registry", "", "HOST:PORT of a plain-HTTP registry")
	repo := flag.String("repo", "", "repository name, e.g. library/busybox")
	tag := flag.String("tag", "latest", "tag to push")
	rootfs := flag.String("rootfs", "", "directory holding the image's root file system")
	entrypoint := flag.String("entrypoint", "", "comma-separated entrypoint")
	cmd := flag.String("cmd", "", "comma-separated default arguments")
	user := flag.String("user", "", "user the image runs as (UID[:GID])")
	workdir := flag.String("workdir", "/", "working directory")
	flag.Var(&envs, "env", "K=V environment entry (repeatable)")
	flag.Parse()
	if *host == "" || *repo == "" || *rootfs == "" {
		log.Fatal("--registry, --repo and --rootfs are required")
	}
	raw, compressed, err := layer(*rootfs)
	if err != nil {
		log.Fatalf("packing %s: %v", *rootfs, err)
	}
	if len(envs) == 0 {
		envs = listFlag{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "1970-01-01T00:00:00Z",
		"config": map[string]any{
			"Entrypoint": split(*entrypoint), "Cmd": split(*cmd), "User": *user,
			"Env": []string(envs), "WorkingDir": *workdir,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(raw)}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        descriptor{mediaConfig, digestOf(config), len(config)},
		"layers":        []descriptor{{mediaLayer, digestOf(compressed), len(compressed)}},
	})
	r := registry{base: "http://" + *host, repo: *repo}
	for _, blob := range [][]byte{compressed, config} {
		if err := r.pushBlob(blob); err != nil {
			log.Fatalf("pushing to %s: %v", *host, err)
		}
	}
	if err := r.pushManifest(*tag, manifest); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s/%s:%s@%s\n", *host, *repo, *tag, digestOf(manifest))
}
