fn main() -> std::process::ExitCode {
    zferry_cli::main::<zferry_driver_mio::MioDriver>()
}
