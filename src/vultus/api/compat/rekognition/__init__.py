"""AWS Rekognition's collections API over the AWS JSON 1.1 protocol, at `/rekognition`:
boto3 and the other AWS SDKs work against `vultus serve` unchanged (docs/compat.md).

`protocol` reads and answers requests and checks their SigV4 signature (`sigv4`) and shape
(`shapes`); `operations` calls the Engine; `mapping` turns Vultus's answers into Rekognition's
terms."""
