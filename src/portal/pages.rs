//! The portal's pages: HTML compiled into the binary, mobile-first, readable with JavaScript off,
//! every dynamic value escaped, in the customer's language (English, German, Spanish).
//!
//! Owns: page text and markup, language choice from `Accept-Language`. Knows nothing of HTTP
//! plumbing, the store or the firewall: it renders what `routes` hands it.

use crate::duration;
use crate::voucher::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
    Es,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Es => "es",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.get(..2).map(str::to_ascii_lowercase).as_deref() {
            Some("en") => Some(Lang::En),
            Some("de") => Some(Lang::De),
            Some("es") => Some(Lang::Es),
            _ => None,
        }
    }

    /// The best language for an `Accept-Language` header (RFC 9110 q-values), else `default`.
    pub fn negotiate(header: Option<&str>, default: Lang) -> Lang {
        let Some(h) = header else { return default };
        let mut best: Option<(f32, Lang)> = None;
        for item in h.split(',').take(16) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(tag) {
                if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(default, |(_, l)| l)
    }

    fn t(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
            Lang::Es => &ES,
        }
    }
}

struct Texts {
    welcome: &'static str,
    welcome_unnamed: &'static str,
    how: &'static str,
    code_label: &'static str,
    submit: &'static str,
    photo: &'static str,
    photo_hint: &'static str,
    photo_busy: &'static str,
    scan: &'static str,
    scan_hint: &'static str,
    online: &'static str,
    time_left: &'static str,
    devices: &'static str,
    data_left: &'static str,
    not_online: &'static str,
    try_again: &'static str,
    another: &'static str,
    ask_staff: &'static str,
    no_mac_title: &'static str,
    no_mac: &'static str,
    too_many: &'static str,
    busy: &'static str,
    r_malformed: &'static str,
    r_unknown_key: &'static str,
    r_bad_signature: &'static str,
    r_out_of_range: &'static str,
    r_revoked: &'static str,
    r_deadline: &'static str,
    r_expired: &'static str,
    r_data_used_up: &'static str,
    r_central: &'static str,
    r_limit: &'static str,
    r_unsupported_limit: &'static str,
    r_photo: &'static str,
}

const EN: Texts = Texts {
    welcome: "Welcome to the Wi-Fi of",
    welcome_unnamed: "Welcome to our Wi-Fi",
    how: "Open the QR code on your receipt with your phone's camera, take a photo of it, or type the code below.",
    code_label: "Voucher code",
    submit: "Get online",
    photo: "Take a photo of the voucher",
    photo_hint: "Take a sharp photo of the QR code on your receipt.",
    photo_busy: "Reading the photo…",
    scan: "Scan with the camera",
    scan_hint: "Hold the QR code on your receipt in front of the camera.",
    online: "You are online",
    time_left: "Time left",
    devices: "Devices on this voucher",
    data_left: "Data left (all devices of this voucher)",
    not_online: "Not connected",
    try_again: "Try another voucher",
    another: "Add another voucher",
    ask_staff: "Please ask the staff for help.",
    no_mac_title: "We cannot see your device",
    no_mac: "Your device could not be identified on the Wi-Fi. Turn Wi-Fi off and on again, reconnect to the network, then open this page again.",
    too_many: "Too many attempts. Please wait a minute and try again.",
    busy: "The router is reading another photo. Please try again in a few seconds, or type the code.",
    r_malformed: "This is not a valid voucher code. Check that you typed or scanned all of it.",
    r_unknown_key: "This voucher was not issued for this venue.",
    r_bad_signature: "This voucher is not genuine: it was altered or mistyped.",
    r_out_of_range: "This voucher has settings this router cannot accept.",
    r_revoked: "This voucher has been cancelled.",
    r_deadline: "This voucher had to be used for the first time before",
    r_expired: "This voucher's time is used up.",
    r_data_used_up: "This voucher's data allowance is used up. Please ask staff for a new voucher.",
    r_central: "This voucher was refused by the central system of this chain of venues.",
    r_limit: "This voucher is already in use on its maximum number of devices",
    r_unsupported_limit: "This voucher carries a data or speed limit that needs newer router software. Please ask staff for a voucher without limits.",
    r_photo: "No voucher code could be read from the photo. Try a sharper photo in good light, or type the code.",
};

const DE: Texts = Texts {
    welcome: "Willkommen im WLAN von",
    welcome_unnamed: "Willkommen in unserem WLAN",
    how: "Öffnen Sie den QR-Code auf Ihrem Beleg mit der Kamera, fotografieren Sie ihn oder geben Sie den Code unten ein.",
    code_label: "Gutschein-Code",
    submit: "Online gehen",
    photo: "Gutschein fotografieren",
    photo_hint: "Fotografieren Sie den QR-Code auf dem Beleg scharf.",
    photo_busy: "Foto wird gelesen…",
    scan: "Mit der Kamera scannen",
    scan_hint: "Halten Sie den QR-Code auf dem Beleg vor die Kamera.",
    online: "Sie sind online",
    time_left: "Verbleibende Zeit",
    devices: "Geräte mit diesem Gutschein",
    data_left: "Verbleibendes Datenvolumen (alle Geräte dieses Gutscheins)",
    not_online: "Nicht verbunden",
    try_again: "Anderen Gutschein versuchen",
    another: "Weiteren Gutschein hinzufügen",
    ask_staff: "Bitte fragen Sie das Personal.",
    no_mac_title: "Ihr Gerät ist nicht erkennbar",
    no_mac: "Ihr Gerät wurde im WLAN nicht erkannt. Schalten Sie WLAN aus und wieder ein, verbinden Sie sich neu und öffnen Sie diese Seite erneut.",
    too_many: "Zu viele Versuche. Bitte warten Sie eine Minute.",
    busy: "Der Router liest gerade ein anderes Foto. Bitte versuchen Sie es in ein paar Sekunden noch einmal oder geben Sie den Code ein.",
    r_malformed: "Das ist kein gültiger Gutschein-Code. Prüfen Sie, ob er vollständig ist.",
    r_unknown_key: "Dieser Gutschein wurde nicht für diesen Ort ausgestellt.",
    r_bad_signature: "Dieser Gutschein ist nicht echt: er wurde verändert oder falsch eingegeben.",
    r_out_of_range: "Dieser Gutschein hat Einstellungen, die dieser Router nicht annimmt.",
    r_revoked: "Dieser Gutschein wurde storniert.",
    r_deadline: "Dieser Gutschein musste zum ersten Mal benutzt werden vor",
    r_expired: "Die Zeit dieses Gutscheins ist abgelaufen.",
    r_data_used_up: "Das Datenvolumen dieses Gutscheins ist aufgebraucht. Bitte fragen Sie das Personal nach einem neuen Gutschein.",
    r_central: "Dieser Gutschein wurde vom zentralen System dieser Standorte abgelehnt.",
    r_limit: "Dieser Gutschein wird bereits auf der Höchstzahl an Geräten benutzt",
    r_unsupported_limit: "Dieser Gutschein enthält eine Daten- oder Geschwindigkeitsgrenze, für die der Router neuere Software braucht. Bitte fragen Sie das Personal nach einem Gutschein ohne Grenzen.",
    r_photo: "Auf dem Foto wurde kein Gutschein erkannt. Versuchen Sie ein schärferes Foto oder geben Sie den Code ein.",
};

const ES: Texts = Texts {
    welcome: "Bienvenido al Wi-Fi de",
    welcome_unnamed: "Bienvenido a nuestro Wi-Fi",
    how: "Abra el código QR de su ticket con la cámara del móvil, hágale una foto o escriba el código abajo.",
    code_label: "Código del bono",
    submit: "Conectarse",
    photo: "Hacer una foto del bono",
    photo_hint: "Haga una foto nítida del código QR del ticket.",
    photo_busy: "Leyendo la foto…",
    scan: "Escanear con la cámara",
    scan_hint: "Ponga el código QR del ticket delante de la cámara.",
    online: "Está conectado",
    time_left: "Tiempo restante",
    devices: "Dispositivos con este bono",
    data_left: "Datos restantes (todos los dispositivos de este bono)",
    not_online: "No conectado",
    try_again: "Probar otro bono",
    another: "Añadir otro bono",
    ask_staff: "Pida ayuda al personal.",
    no_mac_title: "No vemos su dispositivo",
    no_mac: "No se pudo identificar su dispositivo en el Wi-Fi. Apague y encienda el Wi-Fi, vuelva a conectarse y abra esta página otra vez.",
    too_many: "Demasiados intentos. Espere un minuto.",
    busy: "El router está leyendo otra foto. Inténtelo de nuevo en unos segundos o escriba el código.",
    r_malformed: "Este no es un código de bono válido. Compruebe que está completo.",
    r_unknown_key: "Este bono no se emitió para este local.",
    r_bad_signature: "Este bono no es auténtico: fue alterado o mal escrito.",
    r_out_of_range: "Este bono tiene valores que este router no acepta.",
    r_revoked: "Este bono ha sido anulado.",
    r_deadline: "Este bono debía usarse por primera vez antes de",
    r_expired: "El tiempo de este bono se ha agotado.",
    r_data_used_up: "Los datos de este bono se han agotado. Pida al personal un bono nuevo.",
    r_central: "El sistema central de estos locales ha rechazado este bono.",
    r_limit: "Este bono ya se usa en el número máximo de dispositivos",
    r_unsupported_limit: "Este bono tiene un límite de datos o de velocidad que necesita un software más nuevo en el router. Pida al personal un bono sin límites.",
    r_photo: "No se pudo leer ningún código en la foto. Pruebe con una foto más nítida o escriba el código.",
};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f4ef;color:#222}\
main{max-width:28rem;margin:0 auto;padding:1.25rem}h1{font-size:1.5rem;margin:.5rem 0 1rem}\
.card{background:#fff;border-radius:12px;padding:1rem;box-shadow:0 1px 4px #0002;margin-bottom:1rem}\
label{display:block;font-weight:600;margin-bottom:.4rem}\
input[type=text]{width:100%;box-sizing:border-box;font-size:1rem;padding:.7rem;border:1px solid #999;border-radius:8px}\
button,.button{display:block;width:100%;box-sizing:border-box;margin-top:.8rem;padding:.8rem;font-size:1.05rem;border:0;border-radius:8px;background:#1d6b4f;color:#fff;text-align:center;text-decoration:none}\
.ok{border-left:6px solid #1d6b4f}.err{border-left:6px solid #b3261e}.big{font-size:2rem;font-weight:700}\
.js-only{display:none}.muted{color:#666;font-size:.9rem}\
.file{position:absolute;width:1px;height:1px;opacity:0;overflow:hidden}label.button{font-weight:600;cursor:pointer}";

/// Downscales the chosen photo to grayscale in a canvas and posts the pixels to `/photo`; the
/// router decodes the QR. Works on plain http, where browsers offer no live camera. On https
/// (a secure context with a camera) also "Scan with the camera": a frame every 2 s, at most
/// 640 px, grayscale, to `/photo?live=1` until one holds a code (422 = none, 503 = busy: go on);
/// without a camera or permission the button goes away and photo/paste stay.
const PHOTO_JS: &str = r#"(function(){
var box=document.getElementById('photo-box');if(!box)return;box.style.display='block';
var input=document.getElementById('photo'),msg=document.getElementById('photo-msg');
input.addEventListener('change',function(){var f=input.files&&input.files[0];if(!f)return;
msg.textContent=box.dataset.busy;var img=new Image();img.onload=function(){
var s=Math.min(1,1000/Math.max(img.width,img.height));var w=Math.max(1,Math.round(img.width*s)),h=Math.max(1,Math.round(img.height*s));
var c=document.createElement('canvas');c.width=w;c.height=h;var x=c.getContext('2d');x.drawImage(img,0,0,w,h);
var d=x.getImageData(0,0,w,h).data,g=new Uint8Array(w*h);for(var i=0;i<w*h;i++){g[i]=(d[4*i]*299+d[4*i+1]*587+d[4*i+2]*114)/1000;}
fetch('/photo?w='+w+'&h='+h,{method:'POST',body:g,headers:{'Content-Type':'application/octet-stream'}})
.then(function(r){return r.text();}).then(function(t){document.open();document.write(t);document.close();})
.catch(function(){msg.textContent='';});};img.src=URL.createObjectURL(f);});
var sb=document.getElementById('scan-box'),md=navigator.mediaDevices;
if(!sb||!window.isSecureContext||!md||!md.getUserMedia)return;sb.style.display='block';
var v=document.getElementById('cam'),stream=null;
function stop(){if(stream)stream.getTracks().forEach(function(t){t.stop();});stream=null;v.style.display='none';}
function frame(){if(!stream)return;var w0=v.videoWidth,h0=v.videoHeight;if(!w0){setTimeout(frame,300);return;}
var s=Math.min(1,640/Math.max(w0,h0)),w=Math.round(w0*s),h=Math.round(h0*s);
var c=document.createElement('canvas');c.width=w;c.height=h;var x=c.getContext('2d');x.drawImage(v,0,0,w,h);
var d=x.getImageData(0,0,w,h).data,g=new Uint8Array(w*h);for(var i=0;i<w*h;i++){g[i]=(d[4*i]*299+d[4*i+1]*587+d[4*i+2]*114)/1000;}
fetch('/photo?live=1&w='+w+'&h='+h,{method:'POST',body:g,headers:{'Content-Type':'application/octet-stream'}})
.then(function(r){if(r.status==422||r.status==503){setTimeout(frame,2000);return;}
stop();return r.text().then(function(t){document.open();document.write(t);document.close();});})
.catch(function(){setTimeout(frame,2000);});}
document.getElementById('scan').addEventListener('click',function(){if(stream)return;
md.getUserMedia({video:{facingMode:'environment'},audio:false}).then(function(st){stream=st;v.srcObject=st;
v.style.display='block';v.play();setTimeout(frame,500);}).catch(function(){sb.style.display='none';});});
})();"#;

fn layout(lang: Lang, title: &str, body: &str, script: bool) -> String {
    let js = if script {
        format!("<script>{PHOTO_JS}</script>")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{CSS}</style></head><body><main>{body}</main>{js}</body></html>",
        lang.code(),
        esc(title)
    )
}

/// The form to type or paste a code.
fn code_form(t: &Texts, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/redeem\"><label for=\"code\">{}</label>\
<input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"off\" autocapitalize=\"off\" spellcheck=\"false\" required>\
<button type=\"submit\">{}</button></form>",
        esc(label),
        esc(t.submit)
    )
}

/// The portal: how to get online, a field for the code, and the photo button.
pub fn portal(lang: Lang, venue: &str, notice: Option<&str>) -> String {
    let t = lang.t();
    let notice = notice
        .map(|n| format!("<div class=\"card err\" role=\"alert\">{}</div>", esc(n)))
        .unwrap_or_default();
    // The shipped config names no venue: "Welcome to our Wi-Fi", not "… of Wi-Fi".
    let heading = if venue.trim().is_empty() || venue == crate::config::DEFAULT_VENUE {
        t.welcome_unnamed.to_owned()
    } else {
        format!("{} {venue}", t.welcome)
    };
    // The photo field is a real button (its label; the file input itself is transparent):
    // phones open the camera, other devices the file picker.
    let body = format!(
        "<h1>{}</h1>{notice}<div class=\"card\"><p>{}</p>{}</div>\
<div class=\"card js-only\" id=\"photo-box\" data-busy=\"{}\">\
<p class=\"muted\">{}</p><label for=\"photo\" class=\"button\" id=\"photo-button\">{}</label>\
<input type=\"file\" id=\"photo\" class=\"file\" accept=\"image/*\" capture=\"environment\">\
<p id=\"photo-msg\" class=\"muted\"></p>\
<div id=\"scan-box\" style=\"display:none\"><button type=\"button\" id=\"scan\">{}</button>\
<p class=\"muted\">{}</p><video id=\"cam\" playsinline muted style=\"display:none;width:100%\"></video></div></div>",
        esc(&heading),
        esc(t.how),
        code_form(t, t.code_label),
        esc(t.photo_busy),
        esc(t.photo_hint),
        esc(t.photo),
        esc(t.scan),
        esc(t.scan_hint),
    );
    layout(lang, venue, &body, true)
}

/// What a customer sees once online, and on every later visit.
pub fn success(
    lang: Lang,
    venue: &str,
    seconds_left: u64,
    devices: u8,
    max: u8,
    bytes_left: Option<u64>,
) -> String {
    let t = lang.t();
    let data = bytes_left.map_or(String::new(), |b| {
        format!(
            "<p>{}: <strong id=\"data-left\">{}</strong></p>",
            esc(t.data_left),
            esc(&crate::units::human_bytes(b))
        )
    });
    let body = format!(
        "<h1>{}</h1><div class=\"card ok\" id=\"online\"><p>{}</p><p class=\"big\" id=\"left\">{}</p>\
<p>{}: <strong id=\"devices\">{devices} / {max}</strong></p>{data}</div>\
<div class=\"card\">{}</div><p class=\"muted\">{}</p>",
        esc(t.online),
        esc(t.time_left),
        esc(&duration::format(seconds_left)),
        esc(t.devices),
        code_form(t, t.another),
        esc(venue),
    );
    layout(lang, t.online, &body, false)
}

/// One refusal page per reason, with what to do next.
pub fn refusal(lang: Lang, venue: &str, why: &Refusal) -> String {
    let t = lang.t();
    let (id, text) = match why {
        Refusal::Voucher(r) => (r.code(), reason_text(lang, r)),
        Refusal::Photo => ("photo", t.r_photo.to_owned()),
        Refusal::NoMac => ("no_mac", t.no_mac.to_owned()),
        Refusal::TooMany => ("rate_limited", t.too_many.to_owned()),
        Refusal::Busy => ("busy", t.busy.to_owned()),
    };
    let title = if matches!(why, Refusal::NoMac) {
        t.no_mac_title
    } else {
        t.not_online
    };
    let body = format!(
        "<h1>{}</h1><div class=\"card err\" id=\"refused\" data-reason=\"{id}\"><p>{}</p><p>{}</p></div>\
<a class=\"button\" href=\"/\">{}</a><p class=\"muted\">{}</p>",
        esc(title),
        esc(&text),
        esc(t.ask_staff),
        esc(t.try_again),
        esc(venue)
    );
    layout(lang, title, &body, false)
}

/// What went wrong, for [`refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Voucher(Rejection),
    Photo,
    NoMac,
    TooMany,
    /// The photo reader is taken (one photo at a time); try again shortly.
    Busy,
}

fn reason_text(lang: Lang, r: &Rejection) -> String {
    let t = lang.t();
    match r {
        Rejection::Malformed(_) => t.r_malformed.into(),
        Rejection::UnknownKey(_) => t.r_unknown_key.into(),
        Rejection::BadSignature => t.r_bad_signature.into(),
        Rejection::OutOfRange(_) => t.r_out_of_range.into(),
        Rejection::UnsupportedLimit { .. } => t.r_unsupported_limit.into(),
        Rejection::Revoked => t.r_revoked.into(),
        Rejection::DeadlinePassed { redeem_by } => format!(
            "{} {}.",
            t.r_deadline,
            duration::utc_date(i64::from(*redeem_by))
        ),
        Rejection::Expired { .. } => t.r_expired.into(),
        Rejection::DataUsedUp => t.r_data_used_up.into(),
        // The server's own words (its Reply-Message) follow, as the operator wrote them.
        Rejection::CentralRefused { message } => match message {
            Some(m) => format!("{} {m}", t.r_central),
            None => t.r_central.into(),
        },
        Rejection::DeviceLimit { max_devices } => format!(
            "{} ({max_devices}). {}",
            t.r_limit,
            match lang {
                Lang::En => "The devices that opened it first keep their access; use one of them, or buy another voucher.",
                Lang::De => "Die Geräte, die ihn zuerst geöffnet haben, behalten den Zugang; nutzen Sie eines davon oder kaufen Sie einen weiteren Gutschein.",
                Lang::Es => "Los dispositivos que lo abrieron primero mantienen el acceso; use uno de ellos o compre otro bono.",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_accept_language_quality() {
        assert_eq!(
            Lang::negotiate(Some("de-DE,de;q=0.9,en;q=0.8"), Lang::En),
            Lang::De
        );
        assert_eq!(
            Lang::negotiate(Some("fr,es;q=0.5,en;q=0.7"), Lang::De),
            Lang::En
        );
        assert_eq!(Lang::negotiate(Some("fr,it"), Lang::Es), Lang::Es);
        assert_eq!(Lang::negotiate(None, Lang::En), Lang::En);
        assert_eq!(Lang::negotiate(Some("es;q=0,en"), Lang::De), Lang::En);
    }

    #[test]
    fn venue_names_are_escaped() {
        let page = portal(Lang::En, "<script>alert(1)</script>&'\"", None);
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#39;&quot;"));
    }

    #[test]
    fn the_shipped_config_is_greeted_without_a_venue_name() {
        let page = portal(Lang::En, crate::config::DEFAULT_VENUE, None);
        assert!(page.contains("<h1>Welcome to our Wi-Fi</h1>"), "{page}");
        let page = portal(Lang::De, "Café Nord", None);
        assert!(
            page.contains("<h1>Willkommen im WLAN von Café Nord</h1>"),
            "{page}"
        );
        // The photo field is a button with words on it, not the browser's bare file input.
        assert!(
            page.contains("class=\"button\" id=\"photo-button\">Gutschein fotografieren</label>")
        );
    }

    #[test]
    fn every_refusal_has_its_own_text() {
        let reasons = [
            Rejection::Malformed(crate::voucher::Malformed::Empty),
            Rejection::UnknownKey(crate::keys::KeyId([0; 4])),
            Rejection::BadSignature,
            Rejection::OutOfRange(crate::voucher::OutOfRange::MaxDevices(0)),
            Rejection::UnsupportedLimit { kind: 1 },
            Rejection::Revoked,
            Rejection::DeadlinePassed { redeem_by: 0 },
            Rejection::Expired { ended_at: 0 },
            Rejection::DeviceLimit { max_devices: 3 },
            Rejection::DataUsedUp,
            Rejection::CentralRefused { message: None },
        ];
        for lang in [Lang::En, Lang::De, Lang::Es] {
            let texts: std::collections::HashSet<String> =
                reasons.iter().map(|r| reason_text(lang, r)).collect();
            assert_eq!(texts.len(), reasons.len(), "{lang:?}");
        }
    }
}
