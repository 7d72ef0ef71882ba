// Command gpu-plugin is the container worker's device plugin: it offers N
// GPUs of a resource (nvidia.com/gpu by default) to the kubelet through the
// device-plugin API, the path the NVIDIA device plugin takes on a machine
// with GPUs. There is no GPU behind it: Allocate hands the container the IDs
// of its devices in NVIDIA_VISIBLE_DEVICES (the NVIDIA plugin's "envvar"
// strategy), which is what a workload can observe of its allocation.
//
// It registers on the kubelet's socket and registers again whenever the
// kubelet restarts (the kubelet removes plugin sockets when it starts).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// plugin serves one resource's devices; all of them stay healthy.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
	stop    chan struct{}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	// The devices never change; the stream stays open until the plugin or
	// the kubelet goes away.
	select {
	case <-p.stop:
	case <-stream.Context().Done():
	}
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	known := map[string]bool{}
	for _, d := range p.devices {
		known[d.ID] = true
	}
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		for _, id := range c.DevicesIds {
			if !known[id] {
				return nil, fmt.Errorf("unknown device %q", id)
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// serve starts the plugin's gRPC server on socket and registers it with the
// kubelet; the returned server is stopped when the kubelet restarts.
func serve(p *plugin, dir, socket, resource string) (*grpc.Server, error) {
	path := filepath.Join(dir, socket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	go func() { _ = server.Serve(lis) }()

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		server.Stop()
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     socket,
		ResourceName: resource,
	})
	if err != nil {
		server.Stop()
		return nil, fmt.Errorf("registering with the kubelet: %w", err)
	}
	return server, nil
}

func main() {
	count := flag.Int("count", 1, "how many devices to offer")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource the devices are")
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	prefix := flag.String("id-prefix", "GPU-sandlet-", "device IDs are this prefix and an index")
	flag.Parse()
	if *count < 1 {
		log.Fatalf("--count must be at least 1, not %d", *count)
	}
	p := &plugin{stop: make(chan struct{})}
	for i := 0; i < *count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("%s%d", *prefix, i), Health: pluginapi.Healthy})
	}
	socket := "sandlet-" + strings.ReplaceAll(*resource, "/", "-") + ".sock"

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	var server *grpc.Server
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		// (Re-)register while our socket is missing: at start, and after the
		// kubelet restarted and cleared the directory.
		if _, err := os.Stat(filepath.Join(*dir, socket)); server == nil || err != nil {
			if server != nil {
				server.Stop()
				server = nil
			}
			s, err := serve(p, *dir, socket, *resource)
			if err != nil {
				log.Printf("not registered yet: %v", err)
			} else {
				server = s
				log.Printf("registered %d x %s with the kubelet", *count, *resource)
			}
		}
		select {
		case <-signals:
			close(p.stop)
			if server != nil {
				server.Stop()
			}
			_ = os.Remove(filepath.Join(*dir, socket))
			return
		case <-tick.C:
		}
	}
}
