"""`kpdoctor lab cluster up|down`: a real kube-apiserver + etcd and real kube-proxies in network namespaces.

Root only. Everything it starts is recorded in --state-dir (state.json) and `down` removes exactly that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from kpdoctor.errors import InputError


def register(group: typer.Typer) -> None:
    cluster = typer.Typer(help="A real Kubernetes control plane and real kube-proxies in network namespaces "
                          "(root only; docs/lab.md).", no_args_is_help=True)  # fmt: skip
    group.add_typer(cluster, name="cluster")

    @cluster.command("up")
    def up_cmd(
        state_dir: str = typer.Option(..., "--state-dir", help="Directory for PKI, logs and state.json (created)."),
        version: str = typer.Option("1.37", "--kube-proxy-version", help="1.34 | 1.35 | 1.36 | 1.37"),
        nodes: int = typer.Option(2, "--nodes", min=1, max=20, help="Node namespaces, each running kube-proxy."),
        mode: str = typer.Option("iptables", "--mode", help="iptables | iptables-legacy | nftables"),
        pods: int = typer.Option(2, "--pods-per-node", min=0, max=50, help="Pod namespaces behind each node."),
        fmt: str = typer.Option("text", "-o", "--output", "--format", help="text | json"),
        with_kubelet: bool = typer.Option(False, "--with-kubelet", help="Run a real kubelet + containerd on the "
                                          "first node; its kube-proxy is the DaemonSet's pod (docs/lab.md)."),
        with_cm: bool = typer.Option(False, "--with-controller-manager", help="Also run a real kube-controller-"
                                     "manager (Job, CronJob, ...) and kube-scheduler; needs --with-kubelet."),
    ) -> None:
        """Build (or reuse the cached) binaries, start etcd, kube-apiserver and a kube-proxy per node."""
        from kpdoctor.lab import k8sbuild, kcluster

        if fmt not in ("text", "json"):
            raise InputError(f"--format {fmt!r}: choose text or json")
        if mode not in kcluster.MODES:
            raise InputError(f"--mode {mode!r}: choose from {', '.join(kcluster.MODES)}")
        if with_cm and not with_kubelet:
            raise InputError("--with-controller-manager needs --with-kubelet (the Pods it makes run there)")
        try:
            k8sbuild.resolve_release(version)
        except k8sbuild.BuildError as exc:
            raise InputError(f"--kube-proxy-version: {exc}") from None
        try:
            state = kcluster.up(Path(state_dir), version=version, nodes=nodes, mode=mode, pods_per_node=pods,
                                 with_kubelet=with_kubelet, with_controller_manager=with_cm)
        except k8sbuild.BuildError as exc:
            print(f"kpdoctor lab cluster up: {str(exc).splitlines()[0]}", file=sys.stderr)
            raise typer.Exit(3) from None
        summary = state.summary()
        if fmt == "json":
            sys.stdout.write(json.dumps(summary, indent=2) + "\n")
            return
        typer.echo(f"lab cluster up: kube-proxy {state.version} ({state.mode}), API server {state.apiserver}")
        typer.echo(f"  kubeconfig {state.kubeconfig}")
        for node in summary["nodes"]:
            typer.echo(f"  node {node['name']}  netns {node['netns']}  {node['ip']}")
        if state.kubelet_node:
            typer.echo(f"  kubelet + containerd on {state.kubelet_node}: its kube-proxy is the DaemonSet's pod")
        if state.controller_manager:
            typer.echo("  kube-controller-manager + kube-scheduler: Jobs, CronJobs and Pods run for real")
        typer.echo(f"stop it with: kpdoctor lab cluster down --state-dir {state_dir}")

    @cluster.command("down")
    def down_cmd(state_dir: str = typer.Option(..., "--state-dir", help="The --state-dir given to `up`.")) -> None:
        """Stop every process and delete every namespace `up` recorded in --state-dir, then the directory."""
        from kpdoctor.lab import kcluster, netns

        netns.require_tools()
        removed = kcluster.down(Path(state_dir))
        typer.echo(f"lab cluster down: removed {len(removed)} process(es) and namespace(s)")
