//! The host's fully qualified name, the default `serverFQDN`.

use std::ffi::CStr;

/// The canonical name of this host (`hostname -f`), falling back to the
/// plain host name when the resolver knows no better.
pub fn fqdn() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (we keep the last byte 0 in any case).
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
    let host = if ok {
        CStr::from_bytes_until_nul(&buf)
            .ok()
            .and_then(|c| c.to_str().ok())
            .unwrap_or("localhost")
            .to_string()
    } else {
        "localhost".to_string()
    };
    if host.contains('.') {
        return host;
    }
    canonical(&host).unwrap_or(host)
}

fn canonical(host: &str) -> Option<String> {
    let c_host = std::ffi::CString::new(host).ok()?;
    // SAFETY: getaddrinfo with a valid C string and zeroed hints; the result
    // list is freed with freeaddrinfo before returning.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
            || res.is_null()
        {
            return None;
        }
        let name = (*res).ai_canonname;
        let out = if name.is_null() {
            None
        } else {
            CStr::from_ptr(name).to_str().ok().map(str::to_string)
        };
        libc::freeaddrinfo(res);
        out.filter(|n| n.contains('.'))
    }
}
