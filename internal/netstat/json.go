package netstat

import (
	"encoding/json"
	"io"

	"github.com/tcpstat/tcpstat/internal/snapshot"
)

// The JSON field names below are documented in docs/list.md and are
// stable: add fields, never rename or remove them.

type jsonEndpoint struct {
	Address string `json:"address"`
	Port    uint16 `json:"port"`
}

type jsonOwner struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
	Cmd  string `json:"cmd"`
}

type jsonTimer struct {
	Name        string  `json:"name"`
	Seconds     float64 `json:"seconds"`
	Retransmits uint8   `json:"retransmits"`
	Probes      uint8   `json:"probes"`
}

type jsonSocket struct {
	Proto     string        `json:"proto"`
	Family    string        `json:"family"`
	State     string        `json:"state"`
	Local     *jsonEndpoint `json:"local,omitempty"`
	Remote    *jsonEndpoint `json:"remote,omitempty"`
	RecvQ     uint32        `json:"recv_q"`
	SendQ     uint32        `json:"send_q"`
	UID       uint32        `json:"uid"`
	Inode     uint64        `json:"inode"`
	Cookie    uint64        `json:"cookie,omitempty"`
	Owners    []jsonOwner   `json:"owners,omitempty"`
	Timer     *jsonTimer    `json:"timer,omitempty"`
	Type      string        `json:"type,omitempty"`
	Path      string        `json:"path,omitempty"`
	RefCnt    uint32        `json:"refcnt,omitempty"`
	PeerInode uint64        `json:"peer_inode,omitempty"`
}

func toJSON(s *snapshot.Socket, c *Config) jsonSocket {
	j := jsonSocket{Proto: protoName(s), RecvQ: s.RecvQ, SendQ: s.SendQ, UID: s.UID, Inode: s.Inode, Cookie: s.Cookie}
	for _, o := range s.Owners {
		j.Owners = append(j.Owners, jsonOwner{PID: o.PID, Comm: o.Comm, Cmd: o.Cmd})
	}
	if s.Proto == snapshot.UNIX {
		j.Family = "unix"
		j.State = unixState(s)
		if j.State == "" {
			j.State = "UNCONNECTED"
		}
		j.Type = unixTypeName(s.UnixType)
		j.Path, j.RefCnt, j.PeerInode = s.Path, s.RefCnt, s.Peer
		return j
	}
	j.Family = "inet"
	if s.IPv6 {
		j.Family = "inet6"
	}
	j.State = stateName(s)
	if s.Proto == snapshot.UDP && j.State == "" {
		j.State = "UNCONN"
	}
	j.Local = &jsonEndpoint{s.Local.Addr().String(), s.Local.Port()}
	j.Remote = &jsonEndpoint{s.Remote.Addr().String(), s.Remote.Port()}
	if c.Timers {
		name := "off"
		if int(s.Timer) < len(timerNames) && timerNames[s.Timer] != "" {
			name = timerNames[s.Timer]
		} else if s.Timer == snapshot.TimerProbe {
			name = "probe"
		}
		j.Timer = &jsonTimer{Name: name, Seconds: s.TimerLeft.Seconds(), Retransmits: s.Retrans, Probes: s.Probes}
	}
	return j
}

// jsonDoc is one JSON document: exactly one of the forms is set.
type jsonDoc struct {
	Time             string                      `json:"time"`
	IntervalSeconds  float64                     `json:"interval_seconds,omitempty"`
	Delta            bool                        `json:"delta,omitempty"`
	Sockets          []jsonSocket                `json:"sockets,omitempty"`
	Summary          []jsonCount                 `json:"summary,omitempty"`
	Statistics       map[string]map[string]int64 `json:"statistics,omitempty"`
	Interfaces       []Interface                 `json:"interfaces,omitempty"`
	InterfaceDetails []IfaceDetail               `json:"interface_details,omitempty"`
	InterfaceCounts  *IfaceCounts                `json:"interface_counts,omitempty"`
	Routes           []Route                     `json:"routes,omitempty"`
	Routes6          []Route6                    `json:"routes6,omitempty"`
	Groups           []Group                     `json:"groups,omitempty"`
	Memory           *SocketMemory               `json:"memory,omitempty"`
	Multicast        *Multicast                  `json:"multicast,omitempty"`
	MulticastStats   *McastStats                 `json:"multicast_statistics,omitempty"`
	DHCP             string                      `json:"dhcp,omitempty"`
	NetToMedia       []Neighbor                  `json:"net_to_media,omitempty"`
	Warning          string                      `json:"warning,omitempty"`
}

type jsonCount struct {
	Proto string `json:"proto"`
	State string `json:"state"`
	Count int    `json:"count"`
}

func writeJSON(w io.Writer, doc *jsonDoc) error {
	enc := json.NewEncoder(w)
	return enc.Encode(doc)
}

func statsJSON(secs []Section, only func(string) bool) map[string]map[string]int64 {
	m := make(map[string]map[string]int64)
	for _, s := range secs {
		if only != nil && !only(s.Name) {
			continue
		}
		kv := make(map[string]int64, len(s.Keys))
		for i, k := range s.Keys {
			kv[k] = s.Values[i]
		}
		m[s.Name] = kv
	}
	return m
}
