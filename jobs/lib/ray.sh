# Sourced by validate and generate (POSIX sh). With RAY_ADDRESS=HOST:PORT, a Ray cluster's GCS
# (compose's `cluster` profile: ray-head:6379), this container joins that cluster as a node
# without CPUs before the job starts: Ray Data's driver must run on a node of the cluster (through
# Ray Client, ray://, its executor fails: 'Worker' object has no attribute 'core_worker'). The
# job's actors run on the cluster's workers; the node goes when the container does.
join_ray_cluster() {
    case "${RAY_ADDRESS:-}" in
        "" | ray://* | auto | local) return 0 ;;
    esac
    ray start --address="$RAY_ADDRESS" --num-cpus=0 --disable-usage-stats >&2
}
