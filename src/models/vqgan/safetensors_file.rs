//! A lazy reader for `.safetensors` files.
//!
//! VQGAN weight files can be whole Lightning checkpoints converted as-is (the
//! sflckr and coco ones also hold a GPT transformer of a gigabyte or more under
//! other prefixes). Reading only the JSON header first lets us infer the
//! architecture from shapes and then read just the tensors the model needs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// One tensor's place in the file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub dtype: String,
    pub shape: Vec<i64>,
    begin: u64,
    end: u64,
}

/// An opened safetensors file whose header has been parsed.
pub(crate) struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    pub entries: BTreeMap<String, Entry>,
}

impl SafetensorsFile {
    /// Opens `path` and parses its header; errors name the file.
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let shown = path.display();
        let mut file = File::open(path).map_err(|e| {
            Error::weights(format!(
                "cannot open VQGAN weights {shown}: {e} (run `zoetrope weights fetch` or \
                 `zoetrope weights import` to put the model in place)"
            ))
        })?;
        let bad = |why: String| {
            Error::weights(format!(
                "{shown} is not a valid .safetensors file ({why}); convert the checkpoint \
                 again with `zoetrope weights import`"
            ))
        };
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .map_err(|e| bad(format!("header length: {e}")))?;
        let n = u64::from_le_bytes(len);
        let file_len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {shown}"), e))?
            .len();
        if n == 0 || n > 100 << 20 || n + 8 > file_len {
            return Err(bad(format!(
                "header of {n} bytes in a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| bad(format!("header: {e}")))?;
        let json: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| bad("header is not a JSON object".into()))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;
        let mut entries = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                continue;
            }
            let dtype = v["dtype"]
                .as_str()
                .ok_or_else(|| bad(format!("`{name}` has no dtype")))?
                .to_string();
            let shape = v["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_i64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(format!("`{name}` has no valid shape")))?;
            let offs = v["data_offsets"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64()).collect::<Option<Vec<_>>>())
                .filter(|o| o.len() == 2 && o[0] <= o[1] && o[1] <= data_len)
                .ok_or_else(|| bad(format!("`{name}` has invalid data offsets")))?;
            entries.insert(
                name.clone(),
                Entry {
                    dtype,
                    shape,
                    begin: offs[0],
                    end: offs[1],
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            file,
            data_start,
            entries,
        })
    }

    /// Reads one tensor (on the CPU, in the file's dtype).
    pub fn read(&mut self, name: &str) -> Result<Tensor> {
        let shown = self.path.display().to_string();
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| Error::weights(format!("{shown}: tensor `{name}` is missing")))?
            .clone();
        let kind = match e.dtype.as_str() {
            "F32" => Kind::Float,
            "F16" => Kind::Half,
            "BF16" => Kind::BFloat16,
            "F64" => Kind::Double,
            other => {
                return Err(Error::weights(format!(
                    "{shown}: tensor `{name}` has dtype {other}; expected a floating-point \
                     type (F32, F16, BF16 or F64)"
                )))
            }
        };
        let numel: i64 = e.shape.iter().product();
        let bytes = (e.end - e.begin) as usize;
        if numel as usize * kind.elt_size_in_bytes() != bytes {
            return Err(Error::weights(format!(
                "{shown}: tensor `{name}` holds {bytes} bytes, which does not match its \
                 shape {:?} and dtype {}",
                e.shape, e.dtype
            )));
        }
        let mut buf = vec![0u8; bytes];
        self.file
            .seek(SeekFrom::Start(self.data_start + e.begin))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|err| Error::io(format!("reading tensor `{name}` from {shown}"), err))?;
        Ok(Tensor::f_from_data_size(&buf, &e.shape, kind)?)
    }
}
