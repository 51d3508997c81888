package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// basePort is the first listener port, below the ephemeral range so that no
// client socket of the machine holds it.
const basePort = 28100

// churn opens, accepts and closes loopback connections from cfg.workers
// goroutines, each with its own listener, until the phase's time or
// connection budget runs out. Clients bind to rotating 127.1.x.y source
// addresses so that TIME_WAIT never exhausts the 4-tuples.
func churn(cfg config) (conns int, listeners int, elapsed time.Duration, err error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.workers)
	lns := make([]int, cfg.workers)
	for i := range lns {
		ln, err := listen(basePort + i)
		if err != nil {
			for _, fd := range lns[:i] {
				unix.Close(fd)
			}
			return 0, 0, 0, err
		}
		lns[i] = ln
	}
	start := time.Now()
	end := start.Add(cfg.duration)
	perWorker := cfg.maxConns / cfg.workers
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := &unix.SockaddrInet4{Port: basePort + i, Addr: [4]byte{127, 0, 0, 1}}
			for n := 0; n < perWorker && time.Now().Before(end); n++ {
				src := &unix.SockaddrInet4{Addr: [4]byte{127, 1, byte(n >> 8 % 250), byte(1 + (n+i)%250)}}
				if err := connectOnce(ln, src, dst); err != nil {
					errs <- err
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	for _, fd := range lns {
		unix.Close(fd)
	}
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, 0, err
	}
	return int(total.Load()), len(lns), elapsed, nil
}

func listen(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen on 127.0.0.1:%d: %w", port, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// connectOnce makes one connection through ln and closes both ends: ten
// transitions, five per end, whichever end's FIN arrives first.
func connectOnce(ln int, src, dst *unix.SockaddrInet4) error {
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(c)
	if err := unix.SetsockoptInt(c, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return err
	}
	if err := unix.Bind(c, src); err != nil {
		return fmt.Errorf("bind %v: %w", src.Addr, err)
	}
	if err := unix.Connect(c, dst); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return unix.Close(a)
}
