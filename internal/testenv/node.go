package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// nodeServer is one run of a Node.js server script that prints
// "LISTENING PORT" on stdout once it is bound (kinesalite, dynalite).
type nodeServer struct {
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
	port   int
}

// startNodeServer runs node with args and waits for its LISTENING line;
// name is the server's, for errors. Everything else it prints is kept in logs.
func startNodeServer(name, node string, args ...string) (*nodeServer, error) {
	cmd := exec.Command(node, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	got := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "LISTENING "); ok {
				n, _ := strconv.Atoi(p)
				got <- n
				continue
			}
			logs.Write([]byte(line + "\n"))
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case p := <-got:
		return &nodeServer{cmd: cmd, exited: exited, logs: logs, port: p}, nil
	case <-exited:
		return nil, fmt.Errorf("%s exited: %s", name, strings.TrimSpace(logs.String()))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return nil, errors.New(name + " did not report listening within 30s")
	}
}
