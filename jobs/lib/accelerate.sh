# Sourced by the training jobs (POSIX sh): `pipesql train` under `accelerate launch`, one process
# per GPU that compose.yaml reserved. GPU_COUNT is that reservation: a number, or "all" (then
# counted with nvidia-smi). Natively on a machine without CUDA the same command trains on the
# CPU, one process each, over gloo (tests/test_containers.py runs it so).

train_processes() {
    if [ "${GPU_COUNT:-1}" = all ]; then
        nvidia-smi --list-gpus | wc -l
    else
        echo "${GPU_COUNT:-1}"
    fi
}

# launch_train ACCELERATE_CONFIG [pipesql train arguments...]
launch_train() {
    accelerate_config="$1"
    shift
    exec accelerate launch --config_file "$accelerate_config" --num_processes "$(train_processes)" \
        --main_process_port "${MAIN_PROCESS_PORT:-29500}" -m pipesql train "$@"
}
