package triage

import (
	"bytes"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain text stays", "ok 1 - login works\n", "ok 1 - login works\n"},
		{"path keeps basename", `open "/var/lib/turtles/vms/x/disk.img": denied`, `open "<path>/disk.img": denied`},
		{"path after =", "file=/usr/lib/systemd/systemd-logind", "file=<path>/systemd-logind"},
		{"path at line start", "/home/u/src/test/check-foo:12: fail", "<path>/check-foo:12: fail"},
		{"one component is no path", "cd /tmp and /", "cd /tmp and /"},
		{"URL is no path", "GET https://example.com/a/b", "GET https://example.com/a/b"},
		{"pid in brackets", "sshd[1234]: Accepted key", "sshd[<pid>]: Accepted key"},
		{"pid word", "pid 42 pid=7 PID: 99 rapid 5", "pid <pid> pid=<pid> PID: <pid> rapid 5"},
		{"bare number in brackets stays", "test [12] x", "test [12] x"},
		{"kernel time", "[    1.234567] Kernel panic - not syncing", "[<time>] Kernel panic - not syncing"},
		{"ipv4", "from 10.0.2.15 to 192.168.1.1.", "from <ip> to <ip>."},
		{"ipv4 with port", "connect 127.0.0.1:2222 failed", "connect <ip>:<port> failed"},
		{"ipv4 port word", "Connection to 10.0.0.1 port 22: Broken pipe", "Connection to <ip> port <port>: Broken pipe"},
		{"version is no ip", "version 1.2.3.4.5 and 1.2.3", "version 1.2.3.4.5 and 1.2.3"},
		{"ipv6", "fe80::5054:ff:fe12:3456 and ::1 and 2001:db8:0:0:0:0:2:1", "<ip> and <ip> and <ip>"},
		{"ipv6 with port", "[fe80::1]:22 [::1]:8080", "[<ip>]:<port> [<ip>]:<port>"},
		{"C++ scope is no ip", "std::bad_alloc abc::def", "std::bad_alloc abc::def"},
		{"mac", "link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff", "link/ether <mac> brd <mac>"},
		{"uuid", "machine 3f2504e0-4f89-11d3-9a0c-0305e82c3301 up", "machine <uuid> up"},
		{"hex id", "commit 1a2b3c4d5e6f7a8b9c0d failed", "commit <hex> failed"},
		{"0x hex", "at 0x7ffd1234 in", "at <hex> in"},
		{"long number", "took 123456789 bytes", "took <hex> bytes"},
		{"short hex stays", "cafe 1234567 beef", "cafe 1234567 beef"},
		{"hex inside word stays", "x_deadbeef12 deadbeef12y", "x_deadbeef12 deadbeef12y"},
		{"iso timestamp", "2024-05-01T12:00:01.523Z start", "<time> start"},
		{"iso with zone", "at 2024-05-01 12:00:01+02:00 x", "at <time> x"},
		{"iso date", "on 2024-05-01 ok", "on <time> ok"},
		{"syslog", "Dec  3 02:25:26 host kernel: x", "<time> host kernel: x"},
		{"syslog two digits", "Nov 13 12:25:26 host", "<time> host"},
		{"clock", "at 02:25:26.123 and 1:02:03", "at <time> and <time>"},
		{"hour:minute stays", "line 12:34 ratio 1:2", "line 12:34 ratio 1:2"},
		{"durations", "Ran 3 tests in 0.123s, slept 12ms, waited 3min", "Ran 3 tests in <dur>, slept <dur>, waited <dur>"},
		{"duration needs boundary", "1st 2nd 5sec", "1st 2nd 5sec"},
		{"placeholders stay", "<ip>:<port> <time> [<pid>] <path>/x <hex>", "<ip>:<port> <time> [<pid>] <path>/x <hex>"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Normalize([]byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("Normalize(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeMap(t *testing.T) {
	in := "a 10.0.2.15:22 b /var/lib/x/disk.img c"
	out, m := Normalize([]byte(in))
	for _, tt := range []struct {
		norm string
		orig string
	}{{"a ", "a "}, {" b ", " b "}, {"/disk.img", "/disk.img"}, {" c", " c"}} {
		o := bytes.Index(out, []byte(tt.norm))
		if got := in[m.Orig(o):]; got[:len(tt.orig)] != tt.orig {
			t.Errorf("Orig(%d) for %q: %q", o, tt.norm, got)
		}
	}
	if got := m.Orig(len(out)); got != len(in) {
		t.Errorf("Orig(end) = %d, want %d", got, len(in))
	}
}

// FuzzNormalize: never panics, idempotent, and its map is monotonic,
// within bounds and exact outside placeholders.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"sshd[1234]: Connection from 10.0.2.2 port 45678 on 10.0.2.15 port 22",
		"[    0.000000] Linux version 6.1.0",
		"Dec  3 02:25:26 fedora kernel: Kernel panic - not syncing: VFS",
		"2024-05-01T12:00:01.523+02:00 /usr/bin/qemu-system-x86_64: cannot allocate memory",
		"fe80::1%eth0 [::1]:8080 52:54:00:12:34:56 3f2504e0-4f89-11d3-9a0c-0305e82c3301",
		"pid=12 PID 7 0xdeadbeef 1a2b3c4d5e 0.5s 12µs",
		"<ip>:<port> <time> <path>/x",
		"aa:bb:cc:dd:ee:ff:11 1:2:3:4:5:6:7:8:9",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, m := Normalize(in)
		again, _ := Normalize(out)
		if !bytes.Equal(out, again) {
			t.Fatalf("not idempotent:\n in  %q\n out %q\n out2 %q", in, out, again)
		}
		prev := 0
		for o := 0; o <= len(out); o++ {
			g := m.Orig(o)
			if g < prev || g > len(in) {
				t.Fatalf("Orig(%d) = %d after %d (len %d) for %q -> %q", o, g, prev, len(in), in, out)
			}
			prev = g
		}
		if m.Orig(len(out)) != len(in) {
			t.Fatalf("Orig(end) = %d, want %d", m.Orig(len(out)), len(in))
		}
		// Outside placeholders, bytes map to themselves.
		inPH := make([]bool, len(out))
		for _, r := range m.reps {
			for k := r.out; k < r.outEnd; k++ {
				inPH[k] = true
			}
		}
		for o := range out {
			if !inPH[o] && in[m.Orig(o)] != out[o] {
				t.Fatalf("out[%d]=%q maps to in[%d]=%q", o, out[o], m.Orig(o), in[m.Orig(o)])
			}
		}
	})
}
